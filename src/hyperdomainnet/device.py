"""Device, precision and speed settings, on the ground floor (every layer may use them): device
selection, precision resolved once (``resolve_precision``) and then used as it is (``autocast``),
the CPU allocator and the generator's memory format."""
from __future__ import annotations

import ctypes
import platform
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import torch

from .errors import ConfigError, DeviceError

if TYPE_CHECKING:
    from .stylegan2.generator import Generator

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RESOLVED_PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA GPU if present, else the CPU; other names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively: CUDA compute capability ≥ 8.0,
    or a CPU with AMX tiles (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check()) if check is not None else "amx_bf16" in _cpu_flags()
    return False


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return ""


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 autocast where ``device`` computes it natively (``native_bf16``), else fp32;
    any other of ``PRECISIONS`` as it is (anything else: ``ConfigError``; fp16 off CUDA: ``DeviceError``).
    Resolve once, where a command or trainer starts, and pass the result on."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("fp16 autocast needs a CUDA device; use --precision bf16 on the CPU")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """Mixed-precision context of a resolved precision (``resolve_precision``): fp32 = none."""
    if precision not in RESOLVED_PRECISIONS:
        raise ValueError(f"autocast takes a resolved precision ({', '.join(RESOLVED_PRECISIONS)}), got {precision!r}; "
                         "pass it through resolve_precision first")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


_MMAP_THRESHOLD, _TRIM_THRESHOLD = -3, -1  # glibc mallopt parameters
_CPU_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed CPU memory in the process heap (glibc: mmap threshold 1 GiB, no trimming).

    By default glibc serves every block over 32 MiB with a fresh ``mmap`` and unmaps it on free,
    so each large activation tensor page-faults in again: on a 2-core machine an elementwise op
    on a 128 MiB tensor took ~3× longer than the same op on reused memory. Process-wide and
    idempotent; resident memory then stays at its peak. Returns False where it does not apply
    (not glibc).
    """
    global _CPU_ALLOCATOR_TUNED
    if _CPU_ALLOCATOR_TUNED:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    _CPU_ALLOCATOR_TUNED = bool(libc.mallopt(_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_TRIM_THRESHOLD, 2**31 - 1))
    return _CPU_ALLOCATOR_TUNED


def prepare_generator(G: Generator, device: torch.device, channels_last: bool | None = None,
                      compile: bool = False, low_memory: bool = False) -> Generator:
    """Set G up for fast rendering on ``device``: channels-last activations (None: on CUDA and the
    CPU, where oneDNN/cuDNN convolutions and the depthwise FIR prefer NHWC), the CPU allocator
    tuning (skipped in ``low_memory`` mode: it trades resident memory for speed) and optionally
    ``torch.compile`` of the synthesis network (compiled on first use; needs a C++ compiler on
    the CPU, Triton on CUDA)."""
    if device.type == "cpu" and not low_memory:
        tune_cpu_allocator()
    G.channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    if compile:
        G.compile_synthesis()
    return G
