"""Device, precision and speed settings: device selection, autocast, the CPU allocator, the
generator's memory format, optional ``torch.compile`` and CLIP's attention path."""
from __future__ import annotations

import ctypes
import platform
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..clip import ClipEnsemble
from ..errors import ConfigError, DeviceError
from ..stylegan2.generator import Generator

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    any other of ``PRECISIONS`` as it is (anything else: ``ConfigError``)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """Mixed-precision context for the forward pass (fp32 = none; auto as ``resolve_precision``)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("fp16 autocast needs a CUDA device; use --precision bf16 on the CPU")
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


class PackedSelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose batch-first, unmasked self-attention projects all (B·L)
    tokens with one matrix product before ``scaled_dot_product_attention``.

    PyTorch's generic path (taken whenever autograd records, e.g. for the adapted images' CLIP
    encoding) projects a transposed (L, B, E) view against a broadcast weight as a batched matrix
    product: a third of ViT-B/16's encoding time on a 2-core CPU. Other calls use that path.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        plain = (query is key and key is value and self.batch_first and not need_weights
                 and key_padding_mask is None and attn_mask is None and not is_causal
                 and self._qkv_same_embed_dim and self.bias_k is None and not self.add_zero_attn
                 and (self.dropout == 0 or not self.training))
        if not plain:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        b, n, e = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.num_heads, e // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias), None


def prepare_clip(clip: ClipEnsemble) -> ClipEnsemble:
    """Switch the image towers' self-attention to ``PackedSelfAttention`` (same parameters and
    results, in place); text towers keep theirs (causal masks)."""
    for encoder, _ in clip:
        for module in encoder.model.visual.modules():
            if type(module) is nn.MultiheadAttention:
                module.__class__ = PackedSelfAttention
    return clip
