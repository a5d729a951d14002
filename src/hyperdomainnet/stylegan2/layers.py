"""StyleGAN2 building blocks with rosinality's parameter names (so its ``g_ema`` dicts load as-is).

Every modulated convolution accepts an optional per-sample *input gain* g (B or 1, C_in): the
domain modulation of the paper (g = 1 + δ). Two placements:

* ``after_demod`` (official code): W_b = demod(scale·W·s_b) ⊙ g over input channels.
* ``before_demod`` (paper figure):  W_b = demod(scale·W·(s_b ⊙ g)).

The fast path never builds per-sample 3×3 weights: since g and s act on input channels,
conv(x, W_b) = d_b ⊙ conv(x ⊙ s_b ⊙ g, scale·W), with the demodulation coefficients
d_b,o = (Σ_i,k (scale·W_o,i,k · ŝ_b,i)² + 1e-8)^-½ computed from ŝ = s (after_demod) or s ⊙ g
(Σ_k (scale·W)² is cached while W is frozen). A styled conv is two fused autograd functions
(``ops.scaled_conv``: [blur ∘] conv(x ⊙ s ⊙ g); ``ops.modulated_activation``:
lrelu(√2·(z ⊙ d + noise + bias))), which keep one activation per layer for the backward pass.
The 1×1 toRGB conv multiplies by its tiny per-sample weights as one batched matrix product.
``impl="reference"`` computes the same thing the straightforward way (per-sample weights,
grouped convolutions, the research code's FIR op, plain autograd) for tests and benchmarks.

A ``ConvModifier`` (the official code's weight "patches", used by the ablation parameterisations)
changes the final weight after demodulation and the input gain, shared by the whole batch:
W_b ← W_b ⊙ M + β_o (β broadcast over input channels and taps). The fast path folds M into the
shared dense weight, conv(x, W_b ⊙ M) = d_b ⊙ conv(x ⊙ s_b ⊙ g, scale·W ⊙ M), with d_b still
computed from W and the styles, and adds β_o · conv(Σ_i x_i, 1_{k×k}) for the bias.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .ops import (SQRT2, bias_leaky_relu, make_fir_kernel, modulated_activation, scaled_conv, upfirdn2d,
                  upfirdn2d_reference)

Placement = Literal["after_demod", "before_demod"]
Impl = Literal["fast", "reference"]
PLACEMENTS: tuple[str, ...] = ("after_demod", "before_demod")
DEMOD_EPS = 1e-8
FIR: dict[str, Callable[..., torch.Tensor]] = {"fast": upfirdn2d, "reference": upfirdn2d_reference}


@dataclass(frozen=True)
class ConvModifier:
    """Batch-shared change of a modulated conv's final weight: W ← W ⊙ ``mult`` + ``bias``_o.

    ``mult`` broadcasts to (C_out, C_in, k, k); ``bias`` has shape (C_out,). Either may be None.
    """

    mult: torch.Tensor | None = None
    bias: torch.Tensor | None = None


class PixelNorm(nn.Module):
    """x / sqrt(mean(x², dim=1) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer: y = x·(W·lr_mul/√in)ᵀ + b·lr_mul, optional lrelu·√2."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """Depthwise FIR filter with padding; ``kernel`` buffer as rosinality stores it."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor, impl: Impl = "fast") -> torch.Tensor:
        return FIR[impl](x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR up-sampling of the RGB skip branch."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps) * factor**2)
        self.factor = factor
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor, impl: Impl = "fast") -> torch.Tensor:
        return FIR[impl](x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution; 3×3 ones may up-sample 2× (+ blur)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            p = (len(blur_taps) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self._frozen_cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    def _frozen(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()`` of the weight, cached while the weight is frozen and unchanged
        (keyed by its storage, version, device and dtype); recomputed when it needs a gradient."""
        w = self.weight
        if w.requires_grad or torch.compiler.is_compiling():
            return compute()
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        hit = self._frozen_cache.get(name)
        if hit is None or hit[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                hit = (key, compute())
            self._frozen_cache[name] = hit
        return hit[1]

    def scaled_weight(self) -> torch.Tensor:
        """scale·W as (C_out, C_in, k, k)."""
        return self._frozen("scaled", lambda: self.weight[0] * self.scale)

    def weight_sq(self) -> torch.Tensor:
        """Σ_k (scale·W_o,i,k)², shape (C_out, C_in)."""
        return self._frozen("sq", lambda: self.scaled_weight().pow(2).sum(dim=(2, 3)))

    def demod_coefficients(self, demod_style: torch.Tensor) -> torch.Tensor:
        """d_b,o = (Σ_i ŝ_b,i² · Σ_k (scale·W_o,i,k)² + 1e-8)^-½, shape (B, C_out)."""
        return torch.rsqrt(demod_style.pow(2) @ self.weight_sq().t() + DEMOD_EPS)

    def modulate(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None = None,
                 placement: Placement = "after_demod", modifier: ConvModifier | None = None,
                 demod: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The fast path in pieces (z, d, extra) with conv(x, W_b) = z ⊙ d + extra:
        z = [blur] conv(x ⊙ s ⊙ g, scale·W ⊙ M), d the demodulation coefficients (None without
        demodulation) and extra the modifier's bias term (or None).

        ``demod``: precomputed ``demod_coefficients(style)``, used unless the gain acts before
        demodulation. A 1×1 conv (toRGB) multiplies by per-sample (C_out, C_in) weights instead.
        """
        in_scale = style if gain is None else style * gain
        weight = self.scaled_weight()
        if modifier is not None and modifier.mult is not None:
            weight = weight * modifier.mult
        if self.kernel_size == 1 and not self.upsample:
            z = _pointwise(x, weight[:, :, 0, 0] * in_scale[:, None, :])
        else:
            z = self._scaled_conv(x, in_scale, weight)
        d = None
        if self.demodulate:
            own = placement == "before_demod" and gain is not None
            d = self.demod_coefficients(in_scale if own else style) if own or demod is None else demod
        extra = None
        if modifier is not None and modifier.bias is not None:
            box = x.new_ones(1, 1, self.kernel_size, self.kernel_size)
            summed = self._scaled_conv(x.sum(dim=1, keepdim=True), x.new_ones(1, 1), box)
            extra = summed * modifier.bias[:, None, None].to(summed.dtype)
        return z, d, extra

    def _scaled_conv(self, x: torch.Tensor, in_scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """[blur] conv(x ⊙ in_scale, weight), transposed with stride 2 when up-sampling."""
        if self.upsample:
            return scaled_conv(x, in_scale, weight, transposed=True, fir=self.blur.kernel, fir_pad=self.blur.pad)
        return scaled_conv(x, in_scale, weight, padding=self.padding)

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None = None,
                placement: Placement = "after_demod", impl: Impl = "fast",
                modifier: ConvModifier | None = None) -> torch.Tensor:
        """x (B, C_in, H, W); style s (B, C_in) from ``modulation``; gain (B|1, C_in) or None."""
        if impl == "reference":
            return self._forward_reference(x, style, gain, placement, modifier)
        z, d, extra = self.modulate(x, style, gain, placement, modifier)
        out = z if d is None else z * d[:, :, None, None].to(z.dtype)
        return out if extra is None else out + extra

    def _forward_reference(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None,
                           placement: Placement, modifier: ConvModifier | None = None) -> torch.Tensor:
        """Straightforward per-sample weight modulation with a grouped convolution."""
        b, c_in, h, w = x.shape
        if gain is not None:
            gain = gain.expand(b, c_in)
        demod_style = style * gain if gain is not None and placement == "before_demod" else style
        weight = (self.weight[0] * self.scale)[None] * demod_style[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS)
        if gain is not None and placement == "after_demod":
            weight = weight * gain[:, None, :, None, None]
        if modifier is not None and modifier.mult is not None:
            weight = weight * modifier.mult[None]
        if modifier is not None and modifier.bias is not None:
            weight = weight + modifier.bias[None, :, None, None, None]
        k = self.kernel_size
        x = x.reshape(1, b * c_in, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c_in, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
        else:
            weight = weight.reshape(b * self.out_channels, c_in, k, k)
            out = F.conv2d(x, weight, padding=self.padding, groups=b)
        out = out.reshape(b, self.out_channels, *out.shape[2:])
        return self.blur(out, impl="reference") if self.upsample else out


def _pointwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1×1 conv with per-sample weights (B|1, C_out, C_in) as one batched matrix product, in x's
    memory format (channels-last: (B, HW, C_in) @ Wᵀ; else W @ (B, C_in, HW))."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = torch.matmul(x.permute(0, 2, 3, 1).reshape(b, h * w, c), weight.transpose(1, 2))
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)
    return torch.matmul(weight, x.reshape(b, c, h * w)).view(b, -1, h, w)


class NoiseInjection(nn.Module):
    """x + strength · noise (per-layer learned strength)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise.to(x.dtype)

    def term(self, noise: torch.Tensor | None) -> torch.Tensor | None:
        """strength · noise (B|1, 1, H, W), or None."""
        return None if noise is None else self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU 0.2, gain √2, optional clamp (NVIDIA ``conv_clamp``)."""

    def __init__(self, channels: int, clamp: float | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias, clamp=self.clamp)


class ConstantInput(nn.Module):
    """Learned 4×4 constant, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3×3 conv → noise → bias + lrelu (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample,
                                    blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels, clamp=conv_clamp)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None,
                gain: torch.Tensor | None = None, placement: Placement = "after_demod",
                impl: Impl = "fast", modifier: ConvModifier | None = None,
                demod: torch.Tensor | None = None) -> torch.Tensor:
        """``demod``: precomputed demodulation coefficients of ``style`` (fast path only)."""
        if impl == "reference":
            x = self.conv(x, style, gain, placement, impl, modifier)
            return self.activate(self.noise(x, noise))
        # lrelu(z·d + e + β)·√2 = lrelu(√2·z·d + √2·e + √2·β): the gain folds into small tensors.
        z, d, extra = self.conv.modulate(x, style, gain, placement, modifier, demod)
        e = self.noise.term(noise)
        if extra is not None:
            e = extra if e is None else e + extra
        return modulated_activation(z, d * SQRT2, None if e is None else e * SQRT2, self.activate.bias * SQRT2,
                                    clamp=self.activate.clamp)


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation + bias (+ clamp), added to the up-sampled skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_taps: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None,
                impl: Impl = "fast") -> torch.Tensor:
        out = self.conv(x, style, impl=impl) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        return out if skip is None else out + self.upsample(skip, impl)
