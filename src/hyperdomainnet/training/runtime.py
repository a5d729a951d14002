"""Device and precision selection."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from ..errors import HDNError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA GPU if present, else the CPU; other names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HDNError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HDNError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """Mixed-precision context for the forward pass (fp32 = none)."""
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise HDNError("fp16 autocast needs a CUDA device; use --precision bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
