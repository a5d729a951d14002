"""The filtered leaky ReLU of StyleGAN3 in plain PyTorch (no compiled extension, any device).

y = down_fd( clamp( lrelu(up_fu(x + b)) · gain ) ), where ``up_fu`` inserts ``up`` − 1 zeros
between samples, pads by ``padding`` = (before, after) on both axes (negative crops) and convolves
with ``fu`` (gain up², separable), and ``down_fd`` convolves with ``fd`` (separable 1-D or 2-D
radial) and keeps every ``down``-th sample. The bias is added before up-sampling, as in NVIDIA's
reference, so the zero padding sees it.

``filtered_lrelu`` runs both resampling steps as depthwise convolutions that never build the
zero-inserted or the full-rate filtered-and-discarded tensors: up-sampling is a transposed
convolution with stride ``up`` per axis (its output is the full convolution of the zero-inserted
signal; padding then shifts it, crops as views), down-sampling a convolution with stride ``down``
per axis; the activation runs in place on the up-sampled tensor. Channels-last inputs stay
channels-last (oneDNN / cuDNN depthwise convolutions are several times faster in NHWC).
``filtered_lrelu_reference`` is the plain formulation (zero insertion, pad, full 2-D filters,
keep every ``down``-th sample), the oracle of the tests and the benchmarks' reference path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Padding = tuple[int, int]


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, bias: torch.Tensor,
                   up: int, down: int, padding: Padding, gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """x (B, C, H, W) → (B, C, H', W'); fast path (strided depthwise convolutions)."""
    x = x + bias.to(x.dtype)[None, :, None, None]
    x = _upsample(x, fu, up, padding)
    x = _activate_(x, gain, slope, clamp)
    return _downsample(x, fd, down)


def filtered_lrelu_reference(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                             bias: torch.Tensor, up: int, down: int, padding: Padding, gain: float,
                             slope: float, clamp: float | None) -> torch.Tensor:
    """The same as ``filtered_lrelu``, computed the straightforward way."""
    x = x + bias.to(x.dtype)[None, :, None, None]
    x = _pad(zero_insert(x, up), padding)
    if fu is not None:
        x = depthwise_2d(x, _as_2d(fu) * up**2)
    x = _activate(x, gain, slope, clamp)
    if fd is not None:
        x = depthwise_2d(x, _as_2d(fd))
    return x[:, :, ::down, ::down]


def zero_insert(x: torch.Tensor, up: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H·up, W·up) with x at every ``up``-th sample, zeros elsewhere."""
    if up == 1:
        return x
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h, up, w, up)
    out[:, :, :, 0, :, 0] = x
    return out.reshape(b, c, h * up, w * up)


def depthwise_2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Valid convolution (flipped kernel, i.e. a true convolution) of each channel with f (K, K)."""
    c = x.shape[1]
    k = f.flip(0, 1).to(x.dtype)
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)


def _as_2d(f: torch.Tensor) -> torch.Tensor:
    return f[:, None] * f[None, :] if f.ndim == 1 else f


def _pad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    lo, hi = padding
    return F.pad(x, [lo, hi, lo, hi])


def _activate(x: torch.Tensor, gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    """clamp(lrelu(x, slope) · gain, ±clamp); slope 1 is the identity (ToRGB)."""
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


def _activate_(x: torch.Tensor, gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    """``_activate`` in place on a fresh tensor that no autograd node saved (the up-sampling output):
    lrelu(x)·g = lrelu(g·x) for g > 0; the clamp is out of place when autograd needs the
    leaky ReLU's saved output."""
    if gain != 1:
        x = x.mul_(gain)
    if slope != 1:
        x = F.leaky_relu_(x, slope)
    if clamp is None:
        return x
    return x.clamp(-clamp, clamp) if x.requires_grad else x.clamp_(-clamp, clamp)


def _upsample(x: torch.Tensor, fu: torch.Tensor | None, up: int, padding: Padding) -> torch.Tensor:
    """Zero insertion + pad + convolution with the separable ``fu`` (gain ``up`` per axis).

    The transposed convolution gives the full convolution y of the zero-inserted signal without
    its trailing ``up`` − 1 zeros (length (n−1)·up + K); the padded-then-valid result is
    y[K−1−lo : n·up + hi], i.e. y padded by lo − (K−1) before and hi − (K−1) + up − 1 after."""
    if fu is None:
        return _pad(zero_insert(x, up), padding)
    c, k = x.shape[1], fu.shape[0]
    taps = (fu * up).to(x.dtype)
    x = F.conv_transpose2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, up), groups=c)
    x = F.conv_transpose2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(up, 1), groups=c)
    lo, hi = padding
    return _pad_or_crop(x, lo - (k - 1), hi - (k - 1) + up - 1)


def _pad_or_crop(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Pad (zeros) or crop both spatial axes; crops are views, so the memory format is kept."""
    if before < 0 or after < 0:
        h, w = x.shape[2:]
        x = x[:, :, max(-before, 0): h - max(-after, 0), max(-before, 0): w - max(-after, 0)]
    if before > 0 or after > 0:
        x = F.pad(x, [max(before, 0), max(after, 0)] * 2)
    return x


def _downsample(x: torch.Tensor, fd: torch.Tensor | None, down: int) -> torch.Tensor:
    """Valid convolution with ``fd`` (flipped: a true convolution) at stride ``down``."""
    if fd is None:
        return x[:, :, ::down, ::down]
    c = x.shape[1]
    taps = fd.flip(tuple(range(fd.ndim))).to(x.dtype)
    if fd.ndim == 2:
        return F.conv2d(x, taps[None, None].expand(c, 1, *taps.shape), stride=down, groups=c)
    k = taps.shape[0]
    x = F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, down), groups=c)
    return F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c)
