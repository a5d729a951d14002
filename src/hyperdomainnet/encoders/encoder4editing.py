"""encoder4editing's single-pass e4e ("Encoder4Editing", Tov et al. 2021): a photo → W+ offsets.

The IR-SE50 backbone reads the photo alone (3 input channels). A feature pyramid is built from
the last map of stages 2, 3 and 4 (c₁ 64×64, c₂ 32×32, c₃ 16×16 at a 256 px input):

    p₃ = c₃,   p₂ = up(p₃ → size of c₂) + lat₁(c₂),   p₁ = up(p₂ → size of c₁) + lat₂(c₁)

with ``up`` bilinear interpolation (corners aligned) and lat₁, lat₂ 1×1 convs (with bias) to the
top width. Head i (a :class:`StyleHead`) reads p₃ for i < 3, p₂ for 3 ≤ i < 7 and p₁ for
i ≥ 7, with one stride-2 conv per halving (4, 5 and 6 convs at 256 px). Head 0 gives the base
code w₀ of every entry, the others a delta:

    out[:, 0] = w₀,   out[:, i] = w₀ + head_i(p_level(i))   (all progressive stages on)

and the W+ code of a photo x is ``latent_avg + out(x)``, in one pass (:class:`~.e4e.E4EEncoder`).
Parameter names follow the released checkpoints (``input_layer.*``, ``body.*``, ``styles.N.*``,
``latlayer1.*``, ``latlayer2.*``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import irse
from .network import EncoderArch, StyleHead, base_plus_deltas

KIND = "encoder4editing"
PYRAMID_STARTS = (3, 7)   # first W+ entry read from p₂, from p₁


def level(entry: int) -> int:
    """Pyramid level a W+ entry's head reads: 0 (p₃), 1 (p₂) or 2 (p₁)."""
    return sum(entry >= start for start in PYRAMID_STARTS)


def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling (corners aligned) of ``top`` to ``lateral``'s size, plus ``lateral``."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def feature_pyramid(stages: list[torch.Tensor], latlayer1: nn.Module, latlayer2: nn.Module,
                    top_level: int) -> list[torch.Tensor]:
    """[p₃, p₂, p₁] up to ``top_level`` from the stage maps [·, c₁, c₂, c₃] (module docstring)."""
    _, c1, c2, c3 = stages
    maps = [c3]
    if top_level >= 1:
        maps.append(upsample_add(c3, latlayer1(c2)))
    if top_level >= 2:
        maps.append(upsample_add(maps[1], latlayer2(c1)))
    return maps


class Encoder4EditingNet(nn.Module):
    """(B, 3, 256, 256) → (B, n_styles, style_dim) offsets from ``latent_avg`` (module docstring)."""

    def __init__(self, arch: EncoderArch) -> None:
        super().__init__()
        if arch.kind != KIND:
            raise ValueError(f"kind must be {KIND!r}, got {arch.kind!r}")
        self.arch = arch
        top = arch.widths[-1]
        self.input_layer = irse.input_layer(arch.input_nc, arch.stem_width)
        self.body = irse.body(arch.widths, arch.stem_width)
        self.styles = nn.ModuleList(StyleHead(top, arch.style_dim, arch.head_convs + level(i))
                                    for i in range(arch.n_styles))
        self.latlayer1 = nn.Conv2d(arch.widths[2], top, 1)
        self.latlayer2 = nn.Conv2d(arch.widths[1], top, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.arch.input_nc:
            raise ValueError(f"expected images (B, {self.arch.input_nc}, H, W), got {tuple(x.shape)}")
        stages = irse.stage_maps(self.body, self.input_layer(x))
        maps = feature_pyramid(stages, self.latlayer1, self.latlayer2, level(self.arch.n_styles - 1))
        codes = torch.stack([head(maps[level(i)]) for i, head in enumerate(self.styles)], dim=1)
        return base_plus_deltas(codes)


__all__ = ["KIND", "Encoder4EditingNet", "feature_pyramid", "level", "upsample_add"]
