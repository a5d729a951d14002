"""The StyleGAN2 generator (config-f layout of rosinality's stylegan2-pytorch) with domain modulation.

Mapping: z → PixelNorm → ``n_mlp`` equalised linear layers (lr multiplier ``lr_mlp``) → w.
Synthesis: learned 4×4 constant, ``conv1`` + ``to_rgb1`` at 4 px, then per resolution an
up-sampling 3×3 conv, a 3×3 conv and a toRGB added to the up-sampled RGB skip.
W+ indexing: ``conv1`` reads w[0], ``to_rgb1`` w[1], ``convs[i]`` w[i+1], ``to_rgbs[k]`` w[2k+3].

Domain modulation (HyperDomainNet): a vector δ of ``domain_size`` numbers, split per 3×3 modulated
conv by ``domain_layout`` (their input-channel counts, toRGB excluded), applied as the input gain
1 + δ of each conv (see ``layers``). A StyleSpace offset Δs (same layout) shifts the styles
s ← s + Δs before modulation. Both accept one vector (D,) for the batch or one per sample (B, D).
``modifiers`` (one ``ConvModifier`` or None per 3×3 modulated conv) change those convs' final
weights, shared by the batch: the hook of the ablation parameterisations.
"""
from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import nn

from ..errors import ConfigError
from .layers import (PLACEMENTS, ConstantInput, ConvModifier, EqualLinear, Impl, PixelNorm,
                     Placement, StyledConv, ToRGB)

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES: tuple[str, ...] = ("const", "random", "none")
MEAN_LATENT_SAMPLES = 4096


#: Inclusive bounds of the integer fields, a little beyond what real StyleGAN2 generators use
#: (size ≤ 1024, style_dim 512, n_mlp 2–8, channel multiplier 1–2, channel_max 512), so that a
#: file or spec naming a generator can never make one that exhausts a machine.
ARCH_BOUNDS: dict[str, tuple[int, int]] = {"size": (8, 4096), "style_dim": (1, 2048), "n_mlp": (1, 16),
                                           "channel_multiplier": (1, 8), "channel_max": (1, 2048)}
#: Generators above this many parameters are refused (FFHQ 1024 config-f has 30 M).
MAX_PARAMETERS = 100_000_000
MAX_BLUR_TAPS = 8


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GeneratorArch:
    """Everything that fixes a generator's parameter shapes and forward pass; every field is
    checked against ``ARCH_BOUNDS`` (and the total against ``MAX_PARAMETERS``) on construction,
    before anything is allocated."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    conv_clamp: float | None = None
    blur_taps: tuple[int, ...] = field(default=(1, 3, 3, 1))

    def __post_init__(self) -> None:
        for name, (lo, hi) in ARCH_BOUNDS.items():
            value = getattr(self, name)
            if not (_is_int(value) and lo <= value <= hi):
                raise ConfigError(f"generator {name} must be an integer in [{lo}, {hi}], got {value!r}")
        if self.size & (self.size - 1):
            raise ConfigError(f"generator size must be a power of two ≥ 8, got {self.size}")
        if not (isinstance(self.lr_mlp, (int, float)) and 0 < self.lr_mlp <= 1):
            raise ConfigError(f"generator lr_mlp must be a number in (0, 1], got {self.lr_mlp!r}")
        if self.conv_clamp is not None and not (isinstance(self.conv_clamp, (int, float))
                                                and 0 < self.conv_clamp < math.inf):
            raise ConfigError(f"generator conv_clamp must be a positive finite number or None, got {self.conv_clamp!r}")
        taps = self.blur_taps
        if not (isinstance(taps, tuple) and 1 <= len(taps) <= MAX_BLUR_TAPS
                and all(_is_int(t) and 0 <= t <= 255 for t in taps) and sum(taps) > 0):
            raise ConfigError(f"generator blur_taps must be 1 to {MAX_BLUR_TAPS} integers in [0, 255] with a positive "
                              f"sum, got {taps!r}")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ConfigError(f"a generator {self.describe()} would have {self.parameter_count() / 1e6:.0f} M "
                              f"parameters, over the limit of {MAX_PARAMETERS // 1_000_000} M")

    def describe(self) -> str:
        """``size 64, style_dim 512, n_mlp 8, channel_multiplier 2, channel_max 512`` (for messages)."""
        return ", ".join(f"{name} {getattr(self, name)}" for name in ARCH_BOUNDS)

    def parameter_count(self) -> int:
        """Trainable parameters of the generator (mapping, constant, styled convs, toRGBs)."""
        dim = self.style_dim
        layout = self.domain_layout()
        outputs = layout[1:] + [self.channels(self.size)]
        convs = sum(c_out * c_in * 9 + c_in * dim + c_in + 1 + c_out for c_in, c_out in zip(layout, outputs))
        rgb_inputs = [self.channels(2**r) for r in range(2, self.log_size + 1)]
        to_rgbs = sum(3 * c_in + c_in * dim + c_in + 3 for c_in in rgb_inputs)
        return self.n_mlp * (dim * dim + dim) + layout[0] * 16 + convs + to_rgbs

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W+ entries: 2·log2(size) − 2."""
        return self.log_size * 2 - 2

    def channels(self, resolution: int) -> int:
        """Feature channels at a resolution: 512 up to 32 px, then 2^14·cm / res, capped."""
        base = 512 if resolution <= 32 else (2**14 * self.channel_multiplier) // resolution
        return min(base, self.channel_max)

    def domain_layout(self) -> list[int]:
        """Input channels of each 3×3 modulated conv in W+ order (conv1, then two per resolution)."""
        layout = [self.channels(4)]
        for res_log in range(3, self.log_size + 1):
            layout += [self.channels(2 ** (res_log - 1)), self.channels(2**res_log)]
        return layout

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blur_taps"] = list(self.blur_taps)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> GeneratorArch:
        """The architecture a file records; unknown keys and malformed values are ConfigErrors."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or "size" not in d or not set(d) <= fields:
            raise ConfigError(f"a generator architecture needs 'size' and only keys {sorted(fields)}, got {d!r:.200}")
        d = dict(d)
        if isinstance(d.get("blur_taps"), list):
            d["blur_taps"] = tuple(d["blur_taps"])
        return cls(**d)


def layout_difference(theirs: Sequence[int], ours: Sequence[int]) -> str:
    """Where a domain layout (``theirs``) first differs from a generator's (``ours``), for messages:
    the conv counts when they differ, else the first 3×3 modulated conv (W+ order, from 0) whose
    size differs."""
    if len(theirs) != len(ours):
        return (f"{len(theirs)} modulated convs ({sum(theirs)} numbers) where the generator has {len(ours)} "
                f"({sum(ours)} numbers)")
    i = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), None)
    if i is None:
        return "the same layout"
    return (f"modulated conv {i} of {len(ours)} takes {theirs[i]} numbers where the generator's takes {ours[i]} "
            f"({sum(theirs)} vs {sum(ours)} in all)")


@dataclass(frozen=True)
class StyleCache:
    """What renders of the same W+ codes share: s = A(w) of every modulated conv (``conv_styles``
    per 3×3 conv, ``rgb_styles`` per toRGB, W+ order) and the 3×3 convs' demodulation
    coefficients d(s) (``demod``), for the tensor ``ws`` of the generator ``generator()``."""

    ws: torch.Tensor
    conv_styles: tuple[torch.Tensor, ...]
    rgb_styles: tuple[torch.Tensor, ...]
    demod: tuple[torch.Tensor, ...]
    generator: weakref.ref
    grad: bool

    def narrow(self, start: int, length: int) -> StyleCache:
        """The cache of samples [start, start + length); render it with ``ws=part.ws``."""
        def cut(ts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return tuple(t.narrow(0, start, length) for t in ts)

        return StyleCache(self.ws.narrow(0, start, length), cut(self.conv_styles), cut(self.rgb_styles),
                          cut(self.demod), self.generator, self.grad)


class MappedGenerator(nn.Module):
    """What every generator family shares: the StyleGAN2 mapping network ``style`` (z → w), W+
    codes with style mixing and truncation, the mean latent, and domain-vector splitting by the
    subclass's ``domain_layout``. Subclasses set ``style``, ``style_dim``, ``n_latent``,
    ``latent_avg`` and implement ``domain_layout``, ``style_cache`` and ``synthesis``."""

    family = "stylegan2"
    style: nn.Sequential
    style_dim: int
    n_latent: int
    latent_avg: torch.Tensor

    @property
    def domain_layout(self) -> list[int]:
        raise NotImplementedError

    def style_cache(self, ws: torch.Tensor) -> StyleCache:
        raise NotImplementedError

    def synthesis(self, ws: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    @property
    def domain_size(self) -> int:
        return sum(self.domain_layout)

    @property
    def conv_code_indices(self) -> list[int]:
        """The W+ entry each modulated conv of ``domain_layout`` reads (StyleGAN2: conv j reads w[j])."""
        return list(range(len(self.domain_layout)))

    def split_domain(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Split (D,) or (B, D) into per-layer (1, C_l) or (B, C_l) views."""
        if vector.shape[-1] != self.domain_size or vector.ndim not in (1, 2):
            raise ConfigError(f"domain vector must have shape (D,) or (B, D) with D={self.domain_size}, "
                              f"got {tuple(vector.shape)}")
        if vector.ndim == 1:
            vector = vector[None]
        return list(torch.split(vector, self.domain_layout, dim=1))

    # ----- latents ---------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) → w (B, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self) -> torch.Tensor:
        """The stored mean w (checkpoint's ``latent_avg``), else the mean over 4096 mapped z (seed 0)."""
        if torch.isnan(self.latent_avg).any():
            gen = torch.Generator().manual_seed(0)
            z = torch.randn(MEAN_LATENT_SAMPLES, self.style_dim, generator=gen)
            self.latent_avg.copy_(self.mapping(z.to(self.latent_avg.device)).mean(0))
        return self.latent_avg

    def ws(self, z: torch.Tensor, truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
           z2: torch.Tensor | None = None, crossover: int | None = None) -> torch.Tensor:
        """W+ codes (B, n_latent, style_dim) from z (B, style_dim).

        Style mixing (batch-wise, as rosinality/StyleGAN-NADA) when ``z2`` is given: entries from
        index ``crossover`` ∈ [1, n_latent − 1] come from the second code z2 (``mix_styles``; the
        training step draws z2 and the crossover, ``training.sampling``). Truncation:
        w ← w̄ + ψ·(w − w̄), w̄ = ``truncation_latent`` or the mean latent.
        """
        ws = self.mapping(z)[:, None].repeat(1, self.n_latent, 1)
        if z2 is not None:
            if crossover is None or not 1 <= crossover < self.n_latent:
                raise ConfigError(f"crossover must be in [1, {self.n_latent - 1}], got {crossover}")
            ws = mix_styles(ws, self.mapping(z2)[:, None], crossover)
        if truncation != 1.0:
            avg = self.mean_latent() if truncation_latent is None else truncation_latent
            ws = avg + truncation * (ws - avg)
        return ws

    # ----- synthesis helpers -------------------------------------------------------------------
    def _check_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """W (B, D_w) → W+ (B, n_latent, D_w); W+ is checked."""
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.n_latent, -1)
        if ws.shape[1:] != (self.n_latent, self.style_dim):
            raise ConfigError(f"ws must be (B, {self.n_latent}, {self.style_dim}), got {tuple(ws.shape)}")
        return ws

    def _cache_for(self, ws: torch.Tensor, cache: StyleCache | None) -> StyleCache:
        """``cache`` when it was built by this generator for this very ``ws`` tensor (with autograd
        on if it is on now), else a fresh one: a cache never changes the result."""
        if (cache is not None and cache.generator() is self and cache.ws is ws
                and (cache.grad or not torch.is_grad_enabled())):
            return cache
        return self.style_cache(ws)

    def forward(self, z: torch.Tensor, truncation: float = 1.0, **synthesis_kwargs: Any) -> torch.Tensor:
        """z → image: ``synthesis(ws(z, truncation), **synthesis_kwargs)``."""
        return self.synthesis(self.ws(z, truncation=truncation), **synthesis_kwargs)


class Generator(MappedGenerator):
    """StyleGAN2 generator; ``state_dict`` keys match rosinality's ``g_ema`` plus ``latent_avg``."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channel_max: int = 512, lr_mlp: float = 0.01, conv_clamp: float | None = None,
                 blur_taps: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        arch = GeneratorArch(size, style_dim, n_mlp, channel_multiplier, channel_max, lr_mlp,
                             conv_clamp, tuple(blur_taps))
        self.arch = arch
        self.size, self.style_dim, self.n_latent = size, style_dim, arch.n_latent
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])

        ch4 = arch.channels(4)
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, style_dim, blur_taps=blur_taps, conv_clamp=conv_clamp)
        self.to_rgb1 = ToRGB(ch4, style_dim, upsample=False, conv_clamp=conv_clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch4
        for res_log in range(3, arch.log_size + 1):
            out_ch = arch.channels(2**res_log)
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True, blur_taps=blur_taps,
                                         conv_clamp=conv_clamp))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim, blur_taps=blur_taps,
                                         conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_taps=blur_taps, conv_clamp=conv_clamp))
            in_ch = out_ch

        self.num_layers = 1 + len(self.convs)
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        self.register_buffer("latent_avg", torch.full((style_dim,), float("nan")))
        self.channels_last = False  # render in the channels-last memory format (see device.prepare_generator)
        self.compile_options: dict[str, Any] | None = None  # see compile_synthesis
        self.identity: dict[str, Any] = {"name": None, "sha256": None, "arch": arch.to_dict()}

    # ----- domain layout -------------------------------------------------------------------
    @property
    def styled_convs(self) -> list[StyledConv]:
        """The 3×3 modulated convs in W+ order (``conv1``, ``convs[0]``, …)."""
        return [self.conv1, *self.convs]

    @property
    def domain_layout(self) -> list[int]:
        """Input-channel count of each 3×3 modulated conv: the per-layer sizes of a domain vector."""
        return [c.conv.in_channels for c in self.styled_convs]

    # ----- synthesis -------------------------------------------------------------------------
    def make_noise(self, mode: NoiseMode, batch: int, device: torch.device,
                   generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
        """Per-layer noise: the stored buffers (``const``), fresh N(0, 1) (``random``) or none."""
        if mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if mode == "random":
            return [torch.randn(batch, 1, *getattr(self.noises, f"noise_{i}").shape[2:],
                                generator=generator, device=device) for i in range(self.num_layers)]
        if mode == "none":
            return [None] * self.num_layers
        raise ConfigError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")

    def style_cache(self, ws: torch.Tensor) -> StyleCache:
        """Styles s = A(w) of every modulated conv for W (B, D_w) or W+ codes, and the 3×3 convs'
        demodulation coefficients d(s): all that renders of the same codes share (G_A and G_B of a
        training step) unless a style offset or the ``before_demod`` placement changes them."""
        ws3 = self._check_ws(ws)
        conv_styles = [sc.conv.modulation(ws3[:, i]) for i, sc in enumerate(self.styled_convs)]
        rgb_styles = [rgb.conv.modulation(ws3[:, 2 * k + 1]) for k, rgb in enumerate(self.to_rgb_layers)]
        demod = [sc.conv.demod_coefficients(s) for sc, s in zip(self.styled_convs, conv_styles)]
        return StyleCache(ws, tuple(conv_styles), tuple(rgb_styles), tuple(demod), weakref.ref(self),
                          torch.is_grad_enabled())

    @property
    def to_rgb_layers(self) -> list[ToRGB]:
        """The toRGB layers in W+ order (``to_rgb1``, ``to_rgbs[0]``, …)."""
        return [self.to_rgb1, *self.to_rgbs]

    def synthesis(self, ws: torch.Tensor, domain: torch.Tensor | None = None,
                  style_offset: torch.Tensor | None = None, placement: Placement = "after_demod",
                  noise_mode: NoiseMode = "const", noise: list[torch.Tensor | None] | None = None,
                  impl: Impl = "fast", modifiers: Sequence[ConvModifier | None] | None = None,
                  cache: StyleCache | None = None, checkpoint: bool = False) -> torch.Tensor:
        """Render (B, 3, size, size) images in about [−1, 1] from W (B, D_w) or W+ (B, n_latent, D_w).

        ``domain`` δ: the conv input gain is 1 + δ (δ = 0 reproduces the source generator).
        ``style_offset`` Δs: styles s ← s + Δs. ``noise`` overrides ``noise_mode`` per layer.
        ``modifiers``: per 3×3 conv, W ← W ⊙ M + β after demodulation and the gain (see ``layers``).
        ``cache``: ``style_cache(ws)`` of this very ``ws`` tensor, shared between renders.
        ``checkpoint``: recompute each resolution block in the backward pass instead of keeping
        its activations (less memory, one more forward; only when autograd is recording).
        The result is channels-last when the ``channels_last`` attribute is set; under autocast
        the convolutions run in the autocast dtype.
        """
        if placement not in PLACEMENTS:
            raise ConfigError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        cache = self._cache_for(ws, cache)
        batch = cache.conv_styles[0].shape[0]
        if noise is None:
            noise = self.make_noise(noise_mode, batch, cache.conv_styles[0].device)
        gains = [1 + d for d in self.split_domain(domain)] if domain is not None else [None] * self.num_layers
        offsets = self.split_domain(style_offset) if style_offset is not None else [None] * self.num_layers
        if modifiers is None:
            modifiers = [None] * self.num_layers
        elif len(modifiers) != self.num_layers:
            raise ConfigError(f"modifiers must have one entry per 3×3 conv ({self.num_layers}), got {len(modifiers)}")

        render = self._render_eager if self.compile_options is None else partial(
            _compiled_render(self.compile_options), self)
        return render(cache.conv_styles, cache.rgb_styles, cache.demod, noise, gains, offsets, modifiers,
                            placement, impl, checkpoint and torch.is_grad_enabled())

    def _render_eager(self, conv_styles: Sequence[torch.Tensor], rgb_styles: Sequence[torch.Tensor],
                      demods: Sequence[torch.Tensor], noise: Sequence[torch.Tensor | None],
                      gains: Sequence[torch.Tensor | None], offsets: Sequence[torch.Tensor | None],
                      modifiers: Sequence[ConvModifier | None], placement: Placement, impl: Impl,
                      recompute: bool) -> torch.Tensor:
        """The synthesis network proper, from per-layer styles, noise, gains, offsets and modifiers."""
        def styled(layer: int, x: torch.Tensor) -> torch.Tensor:
            s, offset = conv_styles[layer], offsets[layer]
            demod = demods[layer] if offset is None else None
            return self.styled_convs[layer](x, s if offset is None else s + offset, noise[layer], gains[layer],
                                            placement, impl, modifiers[layer], demod)

        def block(k: int, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = styled(2 * k + 2, styled(2 * k + 1, x))
            return x, self.to_rgbs[k](x, rgb_styles[k + 1], skip, impl=impl)

        x = self.input(conv_styles[0].shape[0])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = styled(0, x)
        skip = self.to_rgb1(x, rgb_styles[0], impl=impl)
        for k in range(len(self.to_rgbs)):
            if recompute:
                x, skip = torch.utils.checkpoint.checkpoint(block, k, x, skip, use_reentrant=False)
            else:
                x, skip = block(k, x, skip)
        return skip

    def compile_synthesis(self, **options: Any) -> None:
        """Run the synthesis network through ``torch.compile(**options)`` from now on (compiled
        on first use; copies of G keep the setting and compile for themselves)."""
        self.compile_options = dict(options)



_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}


def _compiled_render(options: dict[str, Any]) -> Callable[..., torch.Tensor]:
    """A bound ``_render_eager`` through ``torch.compile(**options)``: one compiled function per
    options, shared by generators (dynamo guards on the instance)."""
    key = repr(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(Generator._render_eager, **options)
    return _COMPILED[key]


def mix_styles(ws: torch.Tensor, other: torch.Tensor, start: int) -> torch.Tensor:
    """Style mixing: W+ codes ``ws`` (B, n_latent, D) with the entries from index ``start`` on taken
    from ``other`` (broadcast over the batch and, for a W code (B, 1, D), over the entries)."""
    mixed = ws.clone()
    mixed[:, start:] = other[:, start:] if other.shape[1] > 1 else other
    return mixed
