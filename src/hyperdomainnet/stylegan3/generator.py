"""The StyleGAN3 generator (NVIDIA's alias-free T and R configs) in plain PyTorch, with domain modulation.

Mapping: as StyleGAN2 (PixelNorm → ``n_mlp`` equalised linear layers, lr multiplier 0.01).
W+ has ``n_latent`` = num_layers + 2 entries: the Fourier input reads w[0], modulated conv layer l
reads w[l + 1], the ToRGB layer the last one.

Synthesis: Fourier features (frequencies and phases rotated and translated by an affine of w[0]
and the user ``input.transform``), ``num_layers`` modulated convs each followed by the filtered
leaky ReLU (``ops``) with filters designed from the layer's cutoffs (``filters``), a 1×1 ToRGB
(no demodulation, linear), times ``output_scale``.

A modulated conv layer, with style s = A(w), input gain g_m = magnitude_ema^-½ and domain gain
g = 1 + δ (per input channel):

    Ŵ = W / rms_{i,k}(W_o),  ŝ = s / rms_i(s),
    d_b,o = (Σ_i ŝ_b,i² Σ_k Ŵ_o,i,k² + 1e-8)^-½,
    y = d_b ⊙ conv(x ⊙ ŝ_b ⊙ g_m ⊙ g, Ŵ, padding k − 1)

which is NVIDIA's per-sample weight demod(Ŵ·ŝ) ⊙ g_m ⊙ g applied to x (NVIDIA normalises s over
the whole batch rather than per sample: the two differ only through the 1e-8, and per sample keeps
each sample independent of its batch). ``before_demod`` puts g into the demodulation too
(d from ŝ ⊙ g); a StyleSpace offset shifts s ← s + Δs before normalisation.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import ConfigError
from ..stylegan2.generator import NOISE_MODES, Generator, GeneratorArch, MappedGenerator, StyleCache
from ..stylegan2.layers import PLACEMENTS, ConvModifier, EqualLinear, Impl, PixelNorm, Placement, _pointwise
from .filters import LayerDesign, SynthesisDesign
from .ops import filtered_lrelu, filtered_lrelu_reference

Config = Literal["t", "r"]
CONFIGS: dict[str, dict[str, Any]] = {  # NVIDIA's train.py: R uses 1×1 convs, radial filters, 2× channels
    "t": {"conv_kernel": 3, "radial": False, "channel_base": 32768, "channel_max": 512},
    "r": {"conv_kernel": 1, "radial": True, "channel_base": 65536, "channel_max": 1024},
}
DEMOD_EPS = 1e-8
LRELU_SLOPE = 0.2
FAMILY = "stylegan3"


@dataclass(frozen=True)
class StyleGAN3Arch:
    """Everything that fixes a StyleGAN3 generator's shapes and forward pass."""

    size: int
    config: Config = "t"
    style_dim: int = 512
    n_mlp: int = 2
    channel_base: int | None = None  # None: the config's default
    channel_max: int | None = None
    lr_mlp: float = 0.01
    conv_clamp: float | None = 256.0
    num_layers: int = 14
    num_critical: int = 2
    margin_size: int = 10
    output_scale: float = 0.25
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3

    def __post_init__(self) -> None:
        if self.config not in CONFIGS:
            raise ConfigError(f"StyleGAN3 config must be one of {', '.join(CONFIGS)}, got {self.config!r}")
        log = math.log2(self.size) if self.size > 0 else 0.5
        if not (log.is_integer() and 16 <= self.size <= 4096):
            raise ConfigError(f"StyleGAN3 size must be a power of two from 16 to 4096, got {self.size}")
        if self.n_mlp < 1 or self.style_dim < 1 or not 1 <= self.num_critical < self.num_layers:
            raise ConfigError("n_mlp and style_dim must be positive and 1 ≤ num_critical < num_layers")
        if min(self.resolved("channel_base"), self.resolved("channel_max")) < 1:
            raise ConfigError("channel_base and channel_max must be positive")

    def resolved(self, key: str) -> Any:
        value = getattr(self, key, None)
        return CONFIGS[self.config][key] if value is None else value

    @property
    def n_latent(self) -> int:
        return self.num_layers + 2

    def design(self) -> SynthesisDesign:
        return SynthesisDesign(
            size=self.size, channel_base=self.resolved("channel_base"), channel_max=self.resolved("channel_max"),
            num_layers=self.num_layers, num_critical=self.num_critical, first_cutoff=self.first_cutoff,
            first_stopband=self.first_stopband, last_stopband_rel=self.last_stopband_rel,
            margin_size=self.margin_size, conv_kernel=CONFIGS[self.config]["conv_kernel"],
            radial=CONFIGS[self.config]["radial"])

    def domain_layout(self) -> list[int]:
        """Input channels of each modulated conv layer (ToRGB excluded), in synthesis order."""
        return [layer.in_channels for layer in self.design().layers()[:-1]]

    def to_dict(self) -> dict[str, Any]:
        return {"family": FAMILY, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGAN3Arch:
        return cls(**{k: v for k, v in d.items() if k != "family"})


def generator_family(arch: dict[str, Any] | None) -> str:
    """The family an architecture dict (``G.identity["arch"]``) belongs to; StyleGAN2 by default."""
    return str((arch or {}).get("family", "stylegan2"))


class FourierInput(nn.Module):
    """Fourier features: x = (sin(2π(⟨grid, f_c'⟩ + φ_c')) · a_c) @ (W/√C)ᵀ, where (f', φ') are
    the frequencies and phases under the transform T = R(t) · T(t) · ``transform`` from the
    normalised affine t = A(w0) = (r_c, r_s, t_x, t_y), and a_c damps frequencies beyond the
    bandwidth: a = clamp(1 − (|f'| − bw) / (rate/2 − bw), 0, 1)."""

    def __init__(self, style_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth  # uniform on the disc
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = EqualLinear(style_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # user inverse transform of the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w (B, style_dim) → (B, C, size, size)."""
        b = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device, dtype=t.dtype)
        m_r = eye.repeat(b, 1, 1)  # inverse rotation of the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = eye.repeat(b, 1, 1)  # inverse translation
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ self.transform.to(t.dtype)[None]
        phases = self.phases[None] + (self.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)  # [BC]
        freqs = self.freqs[None] @ transforms[:, :2, :2]  # [BC2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        coords = (torch.arange(self.size, device=w.device, dtype=t.dtype) + 0.5 - self.size / 2) / self.sampling_rate
        gx, gy = coords[None, :].expand(self.size, -1), coords[:, None].expand(-1, self.size)
        grid = torch.stack([gx, gy], dim=-1)  # [HW2], (x, y) per pixel
        x = torch.einsum("hwk,bck->bhwc", grid, freqs) + phases[:, None, None]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv (or the 1×1 ToRGB) + filtered leaky ReLU; see the module docstring."""

    def __init__(self, design: LayerDesign, style_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.design = design
        self.in_channels, self.out_channels = design.in_channels, design.out_channels
        self.kernel_size = design.conv_kernel
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(style_dim, design.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(design.out_channels, design.in_channels, design.conv_kernel,
                                               design.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(design.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design.up_filter(), persistent=False)
        self.register_buffer("down_filter", design.down_filter(), persistent=False)
        self._frozen_cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    # ----- weights and styles ------------------------------------------------------------------
    def normalized_weight(self) -> torch.Tensor:
        """Ŵ = W / rms over (in, kh, kw) per output channel (cached while W is frozen)."""
        w = self.weight
        if w.requires_grad or torch.compiler.is_compiling():
            return w * w.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        hit = self._frozen_cache.get("normalized")
        if hit is None or hit[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                hit = (key, w * w.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt())
            self._frozen_cache["normalized"] = hit
        return hit[1]

    def demod_coefficients(self, style: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """d_b,o = (Σ_i ŝ_b,i² Σ_k Ŵ_o,i,k² + 1e-8)^-½ for styles s (B, C_in); (B, C_out).
        With ``gain`` g (``before_demod``): ŝ ⊙ g in place of ŝ."""
        s_hat = normalized_style(style) if gain is None else normalized_style(style) * gain
        return torch.rsqrt(s_hat.square() @ self.normalized_weight().square().sum(dim=(2, 3)).t() + DEMOD_EPS)

    # ----- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None = None,
                placement: Placement = "after_demod", impl: Impl = "fast",
                demod: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W), style s = A(w) (B, C_in), domain gain (B|1, C_in) or None."""
        if x.shape[1:] != (self.in_channels, self.design.in_size, self.design.in_size):
            raise ConfigError(f"layer input must be (B, {self.in_channels}, {self.design.in_size}, "
                              f"{self.design.in_size}), got {tuple(x.shape)}")
        conv = self._conv_reference if impl == "reference" else self._conv
        x = conv(x, style, gain, placement, demod)
        act = filtered_lrelu_reference if impl == "reference" else filtered_lrelu
        torgb = self.design.is_torgb
        return act(x, self.up_filter, self.down_filter, self.bias, self.design.up, self.design.down,
                   self.design.padding, 1.0 if torgb else math.sqrt(2), 1.0 if torgb else LRELU_SLOPE,
                   self.conv_clamp)

    def _input_scale(self, style: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        """Per-sample input-channel scale: ŝ · g_m · g (ToRGB: s/√(C_in k²) · g_m)."""
        magnitude_gain = self.magnitude_ema.rsqrt()
        if self.design.is_torgb:
            return style * (magnitude_gain / math.sqrt(self.in_channels * self.kernel_size**2))
        scale = normalized_style(style) * magnitude_gain
        return scale if gain is None else scale * gain

    def _conv(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None, placement: Placement,
              demod: torch.Tensor | None) -> torch.Tensor:
        """d ⊙ conv(x ⊙ ŝ g_m g, Ŵ): one dense convolution for the batch, no per-sample weights."""
        scale = self._input_scale(style, gain)
        if self.design.is_torgb:
            return _pointwise(x, self.weight[None, :, :, 0, 0] * scale[:, None, :].to(x.dtype))
        if placement == "before_demod" and gain is not None:
            demod = self.demod_coefficients(style, gain)
        elif demod is None:
            demod = self.demod_coefficients(style)
        weight = self.normalized_weight().to(x.dtype)
        if self.kernel_size == 1:
            z = _pointwise(x * scale[:, :, None, None].to(x.dtype), weight[None, :, :, 0, 0])
        else:
            z = F.conv2d(x * scale[:, :, None, None].to(x.dtype), weight, padding=self.kernel_size - 1)
        return z * demod[:, :, None, None].to(z.dtype)

    def _conv_reference(self, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor | None,
                        placement: Placement, demod: torch.Tensor | None) -> torch.Tensor:
        """Per-sample weights demod(Ŵ·ŝ [· g]) · g_m [· g] and a grouped convolution."""
        b = x.shape[0]
        if self.design.is_torgb:
            weight = self.weight[None] * self._input_scale(style, None)[:, None, :, None, None]
        else:
            s_hat = normalized_style(style)
            if gain is not None:
                gain = gain.expand(b, -1)
            demod_style = s_hat * gain if placement == "before_demod" and gain is not None else s_hat
            weight = self.normalized_weight()[None] * demod_style[:, None, :, None, None]  # [BOIkk]
            weight = weight * (weight.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS).rsqrt()
            if gain is not None and placement == "after_demod":
                weight = weight * gain[:, None, :, None, None]
            weight = weight * self.magnitude_ema.rsqrt()
        k = self.kernel_size
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.reshape(-1, self.in_channels, k, k).to(x.dtype),
                       padding=k - 1, groups=b)
        return out.reshape(b, self.out_channels, *out.shape[2:])


def normalized_style(style: torch.Tensor) -> torch.Tensor:
    """ŝ = s / rms_i(s) per sample."""
    return style * style.square().mean(dim=1, keepdim=True).rsqrt()


class StyleGAN3Generator(MappedGenerator):
    """StyleGAN3 generator with the project's generator interface (``ws``, ``synthesis(ws,
    domain=…)``, ``domain_layout``, ``style_cache``, ``identity``, …); no noise inputs."""

    family = FAMILY

    def __init__(self, arch: StyleGAN3Arch) -> None:
        super().__init__()
        self.arch = arch
        self.size, self.style_dim, self.n_latent = arch.size, arch.style_dim, arch.n_latent
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(arch.style_dim, arch.style_dim, lr_mul=arch.lr_mlp, activation=True)
            for _ in range(arch.n_mlp)])
        design = arch.design()
        channels, size, rate, bandwidth = design.input_spec()
        self.input = FourierInput(arch.style_dim, channels, size, rate, bandwidth)
        self.layers = nn.ModuleList([SynthesisLayer(d, arch.style_dim, arch.conv_clamp) for d in design.layers()])
        self.num_layers = arch.num_layers
        self.register_buffer("latent_avg", torch.full((arch.style_dim,), float("nan")))
        self.channels_last = False  # render in the channels-last memory format (see device.prepare_generator)
        self.compile_options: dict[str, Any] | None = None
        self.identity: dict[str, Any] = {"name": None, "sha256": None, "arch": arch.to_dict()}

    # ----- layout --------------------------------------------------------------------------------
    @property
    def styled_convs(self) -> list[SynthesisLayer]:
        """The modulated conv layers (ToRGB excluded) in synthesis order."""
        return list(self.layers[:-1])

    @property
    def to_rgb(self) -> SynthesisLayer:
        return self.layers[-1]

    @property
    def domain_layout(self) -> list[int]:
        return [layer.in_channels for layer in self.styled_convs]

    @property
    def conv_code_indices(self) -> list[int]:
        """Layer j reads w[j + 1] (w[0] drives the Fourier input)."""
        return list(range(1, self.num_layers + 1))

    def set_transform(self, translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        """Translate (in image widths: the image spans [−0.5, 0.5]) and rotate (degrees) the output
        through the input transform, which stores the inverse of the image transform M =
        [[cos a, sin a, t_x], [−sin a, cos a, t_y], [0, 0, 1]] (NVIDIA's gen_images convention)."""
        a = math.radians(rotate)
        m = np.array([[math.cos(a), math.sin(a), translate[0]],
                      [-math.sin(a), math.cos(a), translate[1]], [0.0, 0.0, 1.0]])
        with torch.no_grad():
            self.input.transform.copy_(torch.from_numpy(np.linalg.inv(m)).to(self.input.transform))

    # ----- synthesis -----------------------------------------------------------------------------
    def make_noise(self, mode: str, batch: int, device: torch.device,
                   generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
        """StyleGAN3 has no noise inputs: an empty list for every mode."""
        if mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        return []

    def style_cache(self, ws: torch.Tensor) -> StyleCache:
        """Styles of every modulated conv (``conv_styles``), of ToRGB (``rgb_styles``) and the
        convs' demodulation coefficients, shared by renders of the same codes."""
        ws3 = self._check_ws(ws)
        styles = [layer.affine(ws3[:, i + 1]) for i, layer in enumerate(self.styled_convs)]
        rgb = self.to_rgb.affine(ws3[:, -1])
        demod = [layer.demod_coefficients(s) for layer, s in zip(self.styled_convs, styles)]
        return StyleCache(ws, tuple(styles), (rgb,), tuple(demod), weakref.ref(self), torch.is_grad_enabled())

    def synthesis(self, ws: torch.Tensor, domain: torch.Tensor | None = None,
                  style_offset: torch.Tensor | None = None, placement: Placement = "after_demod",
                  noise_mode: str = "const", noise: Sequence[torch.Tensor | None] | None = None,
                  impl: Impl = "fast", modifiers: Sequence[ConvModifier | None] | None = None,
                  cache: StyleCache | None = None, checkpoint: bool = False) -> torch.Tensor:
        """Render (B, 3, size, size) images in about [−1, 1] from W (B, D_w) or W+ (B, n_latent, D_w).

        ``domain`` δ (D,) or (B, D): each modulated conv's input gain is 1 + δ_l (δ = 0 is the
        source). ``style_offset`` Δs: s ← s + Δs. ``noise_mode`` / ``noise`` are accepted and
        ignored (no noise inputs). ``modifiers`` (weight ablations) are StyleGAN2-only.
        ``checkpoint``: recompute each layer in the backward pass (less memory).
        """
        if placement not in PLACEMENTS:
            raise ConfigError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if modifiers is not None and any(m is not None for m in modifiers):
            raise ConfigError("weight-patch parameterisations are StyleGAN2-only; use domain_vector or "
                              "style_offset with a StyleGAN3 generator")
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        cache = self._cache_for(ws, cache)
        w0 = self._check_ws(cache.ws)[:, 0]
        gains = [1 + d for d in self.split_domain(domain)] if domain is not None else [None] * self.num_layers
        offsets = self.split_domain(style_offset) if style_offset is not None else [None] * self.num_layers
        render = self._render if self.compile_options is None else partial(_compiled(self.compile_options), self)
        return render(w0, cache, gains, offsets, placement, impl, checkpoint and torch.is_grad_enabled())

    def _render(self, w0: torch.Tensor, cache: StyleCache, gains: Sequence[torch.Tensor | None],
                offsets: Sequence[torch.Tensor | None], placement: Placement, impl: Impl,
                recompute: bool) -> torch.Tensor:
        x = self.input(w0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for i, layer in enumerate(self.styled_convs):
            style, offset = cache.conv_styles[i], offsets[i]
            demod = cache.demod[i] if offset is None else None
            args = (x, style if offset is None else style + offset, gains[i], placement, impl, demod)
            x = torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False) if recompute else layer(*args)
        x = self.to_rgb(x, cache.rgb_styles[0], impl=impl)
        return x * self.arch.output_scale

    def compile_synthesis(self, **options: Any) -> None:
        """Run the synthesis network through ``torch.compile(**options)`` from now on."""
        self.compile_options = dict(options)


_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}


def _compiled(options: dict[str, Any]) -> Callable[..., torch.Tensor]:
    key = repr(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(StyleGAN3Generator._render, **options)
    return _COMPILED[key]


def arch_from_dict(d: dict[str, Any]) -> GeneratorArch | StyleGAN3Arch:
    """The architecture a ``G.identity["arch"]`` / checkpoint dict describes, of either family."""
    return StyleGAN3Arch.from_dict(d) if generator_family(d) == FAMILY else GeneratorArch.from_dict(d)


def build_generator(arch: GeneratorArch | StyleGAN3Arch) -> MappedGenerator:
    """An uninitialised-weights generator of either family."""
    if isinstance(arch, StyleGAN3Arch):
        return StyleGAN3Generator(arch)
    return Generator(arch.size, arch.style_dim, arch.n_mlp, arch.channel_multiplier, arch.channel_max,
                     arch.lr_mlp, arch.conv_clamp, arch.blur_taps)
