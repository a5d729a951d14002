"""Plain-PyTorch StyleGAN2 primitives: FIR filtering (upfirdn2d) and the fused bias + leaky ReLU.

No compiled extensions: every op here runs on any device PyTorch supports.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_fir_kernel(taps: Sequence[float]) -> torch.Tensor:
    """2-D FIR kernel from 1-D taps: the outer product of the taps, normalised to sum 1."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve each channel with ``kernel``, downsample.

    Same contract as rosinality's / NVIDIA's ``upfirdn2d`` with symmetric padding
    ``pad = (before, after)`` on both axes (negative values crop). The kernel is applied as a
    true convolution (flipped), depthwise over channels.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def bias_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor,
    negative_slope: float = 0.2,
    gain: float = SQRT2,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(leaky_relu(x + bias) * gain, ±clamp)``; bias is per channel (dim 1)."""
    bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
    x = F.leaky_relu(x + bias, negative_slope) * gain
    return x if clamp is None else x.clamp(-clamp, clamp)
