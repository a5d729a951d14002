"""Plain-PyTorch StyleGAN2 primitives: FIR filtering, the fused modulated-convolution pieces and
the bias + leaky ReLU.

No compiled extensions: every op here runs on any device PyTorch supports, in any memory format.

* ``upfirdn2d``: FIR up/down-sampling as ONE depthwise convolution (transposed when up-sampling,
  i.e. the polyphase form: no zero-inserted tensor, no padded copy for symmetric padding).
  ``upfirdn2d_reference`` is the research code's native version (zero insertion, padding and a
  single-channel convolution over a (B·C, 1, H, W) view), kept as the test oracle and the
  benchmarks' reference path.
* ``scaled_conv``: z = FIR(conv(x ⊙ c, W)) with per-sample input scales c, as an autograd
  Function that saves only x, c and W (x is the previous layer's output, saved anyway), never
  the scaled input or the pre-blur map; gradients for x, c and W as needed.
* ``modulated_activation``: y = clamp(lrelu(z ⊙ d + e + β)) in place, saving only y (and z when
  d needs a gradient); the backward reads the leaky-ReLU slope from the sign of y.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2


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
    ``pad = (before, after)`` on both axes (negative values crop); the kernel is applied as a true
    convolution (flipped), depthwise over channels. Computed as one depthwise convolution: for
    ``up`` > 1 a transposed one with stride ``up``, padding K−1−p0 and output padding
    p1−p0+up−1 (which skips the zero-inserted tensor); for ``down`` > 1 a strided one.
    """
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    k = kernel.to(x.dtype)
    if up > 1:
        q = (kh - 1 - p0, kw - 1 - p0)
        extra = p1 - p0 + up - 1
        if min(q) >= 0 and 0 <= extra < up:
            x = F.conv_transpose2d(x, k[None, None].expand(c, 1, kh, kw), stride=up, padding=q,
                                   output_padding=extra, groups=c)
            return x if down == 1 else x[:, :, ::down, ::down]
        x = _zero_insert(x, up)
    weight = torch.flip(k, (0, 1))[None, None].expand(c, 1, kh, kw)
    if p0 == p1 and p0 >= 0:
        return F.conv2d(x, weight, stride=down, padding=p0, groups=c)
    return F.conv2d(_pad_or_crop(x, p0, p1), weight, stride=down, groups=c)


def upfirdn2d_reference(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """``upfirdn2d`` as the research code's native op: zero insertion, padding, one single-channel
    convolution over a (B·C, 1, H, W) view, then subsampling (test oracle, benchmark reference)."""
    b, c = x.shape[:2]
    if up > 1:
        x = _zero_insert(x, up)
    x = _pad_or_crop(x, *pad)
    h, w = x.shape[2:]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None]
    x = F.conv2d(x.reshape(b * c, 1, h, w), weight)
    x = x.reshape(b, c, *x.shape[2:])
    return x if down == 1 else x[:, :, ::down, ::down]


def fir_adjoint(grad: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Adjoint (gradient) of ``upfirdn2d(x, kernel, pad=pad)``: the flipped kernel, padding K−1−p."""
    k = kernel.shape[0]
    return upfirdn2d(grad, torch.flip(kernel, (0, 1)), pad=(k - 1 - pad[0], k - 1 - pad[1]))


def _zero_insert(x: torch.Tensor, up: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H·up, W·up) with the samples at multiples of ``up``, zeros between."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
    return x.reshape(b, c, h * up, w * up)


def _pad_or_crop(x: torch.Tensor, p0: int, p1: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) both spatial axes by p0 before and p1 after."""
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    return x


def bias_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor,
    negative_slope: float = LRELU_SLOPE,
    gain: float = SQRT2,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(leaky_relu(x + bias) * gain, ±clamp)``; bias is per channel (dim 1)."""
    bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
    x = F.leaky_relu(x + bias, negative_slope) * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


# ----- fused modulated convolution ------------------------------------------------------------
def _per_channel(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B|1, C) → (B|1, C, 1, 1) in ``dtype``."""
    return v[:, :, None, None].to(dtype)


def _conv_args(transposed: bool, padding: int) -> dict[str, Any]:
    """Arguments of ``aten.convolution_backward`` for a 3×3 (or k×k) conv or a stride-2 transposed one."""
    return {"bias_sizes": None, "stride": [2, 2] if transposed else [1, 1],
            "padding": [0, 0] if transposed else [padding, padding], "dilation": [1, 1],
            "transposed": transposed, "output_padding": [0, 0], "groups": 1}


def _conv_weight(weight: torch.Tensor, transposed: bool, dtype: torch.dtype) -> torch.Tensor:
    """(C_out, C_in, k, k) → the layout the (transposed) convolution wants, in ``dtype``."""
    return (weight.transpose(0, 1) if transposed else weight).to(dtype)


class _ScaledConv(torch.autograd.Function):
    """z = FIR(conv(x ⊙ c, W)); see ``scaled_conv``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, transposed: bool,
                padding: int, fir: torch.Tensor | None, fir_pad: tuple[int, int]) -> torch.Tensor:
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        xc = (x * _per_channel(scale, x.dtype)).to(dtype)
        w = _conv_weight(weight, transposed, dtype)
        z = F.conv_transpose2d(xc, w, stride=2) if transposed else F.conv2d(xc, w, padding=padding)
        del xc
        if fir is not None:
            z = upfirdn2d(z, fir, pad=fir_pad)
        ctx.save_for_backward(x, scale, weight)
        ctx.transposed, ctx.padding, ctx.fir, ctx.fir_pad = transposed, padding, fir, fir_pad
        return z

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, scale, weight = ctx.saved_tensors
        need_x, need_c, need_w = ctx.needs_input_grad[:3]
        if ctx.fir is not None:
            grad = fir_adjoint(grad, ctx.fir, ctx.fir_pad)
        dtype = grad.dtype
        w = _conv_weight(weight, ctx.transposed, dtype)
        args = _conv_args(ctx.transposed, ctx.padding)
        gx = gc = gw = None
        if need_x or need_c:
            # Only the shape and memory format of the input matter for the input gradient.
            shape_only = x if x.dtype == dtype else x.to(dtype)
            gxc = torch.ops.aten.convolution_backward(grad, shape_only, w, output_mask=[True, False, False],
                                                      **args)[0]
            if need_c:
                gc = (gxc * x.to(dtype)).sum(dim=(2, 3), dtype=scale.dtype).sum_to_size(scale.shape)
            if need_x:
                gx = gxc.mul_(_per_channel(scale, dtype)).to(x.dtype)
            del gxc
        if need_w:
            xc = (x * _per_channel(scale, x.dtype)).to(dtype)
            gw = torch.ops.aten.convolution_backward(grad, xc, w, output_mask=[False, True, False], **args)[1]
            gw = (gw.transpose(0, 1) if ctx.transposed else gw).to(weight.dtype)
        return gx, gc, gw, None, None, None, None


def scaled_conv(x: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, transposed: bool = False,
                padding: int = 1, fir: torch.Tensor | None = None,
                fir_pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """z = FIR(conv(x ⊙ c, W)): x (B, C_in, H, W), per-sample input scales c (B|1, C_in), one dense
    weight W (C_out, C_in, k, k) for the batch; ``transposed``: a stride-2 transposed conv with W's
    transpose (the up-sampling conv); ``fir`` (optional): ``upfirdn2d(·, fir, pad=fir_pad)`` after it.

    Under autocast the convolution runs in the autocast dtype (and so does z). Saves x, c and W
    only: the backward recomputes x ⊙ c when W needs a gradient.
    """
    return _ScaledConv.apply(x, scale, weight, transposed, padding, fir, fir_pad)


class _ModulatedActivation(torch.autograd.Function):
    """y = clamp(lrelu(z ⊙ d + e + β)); see ``modulated_activation``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, d: torch.Tensor, e: torch.Tensor | None, bias: torch.Tensor | None,
                slope: float, clamp: float | None) -> torch.Tensor:
        y = torch.empty_like(z)
        if e is None:
            torch.mul(z, _per_channel(d, z.dtype), out=y)
        else:
            torch.addcmul(e.to(z.dtype), z, _per_channel(d, z.dtype), out=y)
        if bias is not None:
            y.add_(bias.to(z.dtype).view(1, -1, 1, 1))
        F.leaky_relu(y, slope, inplace=True)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y, d, z if ctx.needs_input_grad[1] else None)
        ctx.e_shape = None if e is None else e.shape
        ctx.e_dtype = None if e is None else e.dtype
        ctx.b_dtype = None if bias is None else bias.dtype
        ctx.slope, ctx.clamp = slope, clamp
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        y, d, z = ctx.saved_tensors
        need_z, need_d, need_e, need_b = ctx.needs_input_grad[:4]
        gu = torch.ops.aten.leaky_relu_backward(grad, y, ctx.slope, True)
        if ctx.clamp is not None:
            gu = gu.masked_fill_(y.abs() >= ctx.clamp, 0)
        gd = (gu * z).sum(dim=(2, 3), dtype=d.dtype).sum_to_size(d.shape) if need_d else None
        ge = gu.sum_to_size(ctx.e_shape).to(ctx.e_dtype, copy=True) if need_e else None
        gb = gu.sum(dim=(0, 2, 3), dtype=ctx.b_dtype) if need_b else None
        gz = gu.mul_(_per_channel(d, gu.dtype)) if need_z else None  # gu is ours: reuse its memory
        return gz, gd, ge, gb, None, None


def modulated_activation(z: torch.Tensor, d: torch.Tensor, e: torch.Tensor | None = None,
                         bias: torch.Tensor | None = None, slope: float = LRELU_SLOPE,
                         clamp: float | None = None) -> torch.Tensor:
    """y = clamp(lrelu(z ⊙ d + e + β, slope), ±clamp) in z's dtype and memory format.

    z (B, C, H, W); d (B|1, C) per sample and channel; e broadcastable to z (noise, extra terms)
    or None; β (C,) or None. Computed in one output buffer; saves y (whose sign gives the slope)
    and, only when d needs a gradient, z. Fold a positive output gain g into d, e and β:
    g·lrelu(u) = lrelu(g·u).
    """
    return _ModulatedActivation.apply(z, d, e, bias, slope, clamp)
