"""ReStyle's IR-SE50 encoders: an image pair (photo ‖ current reconstruction) → W+ offsets.

* ``psp`` ("BackboneEncoder"): one head per W+ entry, all reading the final 16×16 backbone
  map; output (B, n_styles, D) = the heads' codes.
* ``e4e`` ("ProgressiveBackboneEncoder"): head 0 gives a base code w₀ for every entry and heads
  1…n−1 add a per-entry delta: out[:, 0] = w₀, out[:, i] = w₀ + head_i (all stages on, as at
  inference).

A head ("GradualStyleBlock"): k stride-2 3×3 convs with LeakyReLU(0.01) (16 → 1 px for k = 4),
flatten, then an equalised linear layer y = x·(W/√D)ᵀ + b. Parameter names follow the released
checkpoints (``input_layer.*``, ``body.*``, ``styles.N.convs.*``, ``styles.N.linear.*``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FileFormatError
from . import irse

HEAD_CONVS = 4          # log2(16): a 16×16 map down to 1×1
LEAKY_SLOPE = 0.01
#: ``opts["encoder_type"]`` of the released checkpoints → our kind (ReStyle pSp and e4e; encoder4editing)
ENCODER_TYPES: dict[str, str] = {"BackboneEncoder": "psp", "ProgressiveBackboneEncoder": "e4e",
                                 "Encoder4Editing": "encoder4editing"}
KINDS: tuple[str, ...] = ("psp", "e4e")   # the kinds a ReStyleNet computes


def base_plus_deltas(codes: torch.Tensor) -> torch.Tensor:
    """Head outputs (B, n, D) → e4e codes: out[:, 0] = w₀ = codes[:, 0], out[:, i] = w₀ + codes[:, i]."""
    return torch.cat([codes[:, :1], codes[:, :1] + codes[:, 1:]], dim=1)


class EqualLinear(nn.Module):
    """y = x·(W·c)ᵀ + b with c = 1/√in (weights stored unscaled, N(0, 1) at init)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class StyleHead(nn.Module):
    """Feature map (B, C, h, w) → code (B, D): ``n_convs`` stride-2 convs + LeakyReLU, linear."""

    def __init__(self, in_channels: int, style_dim: int, n_convs: int = HEAD_CONVS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(n_convs):
            layers += [nn.Conv2d(in_channels if k == 0 else style_dim, style_dim, 3, 2, 1),
                       nn.LeakyReLU(LEAKY_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(style_dim, style_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[2:] != (1, 1):
            raise ValueError(f"the encoder's feature map is too large for its heads ({tuple(x.shape[2:])} "
                             "after the head convs); feed 256×256 images")
        return self.linear(x.flatten(1))


@dataclass(frozen=True)
class EncoderArch:
    """Shapes of an IR-SE50 encoder (``kind`` psp | e4e | encoder4editing; ``head_convs``: the convs of
    a head reading the 16×16 map)."""

    kind: str
    n_styles: int
    input_nc: int = 6
    style_dim: int = 512
    widths: tuple[int, ...] = irse.WIDTHS
    stem_width: int = irse.STEM_WIDTH
    head_convs: int = HEAD_CONVS

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_styles": self.n_styles, "input_nc": self.input_nc,
                "style_dim": self.style_dim, "widths": list(self.widths), "stem_width": self.stem_width,
                "head_convs": self.head_convs}


class ReStyleNet(nn.Module):
    """The encoder network: (B, input_nc, 256, 256) → (B, n_styles, style_dim) (module docstring)."""

    def __init__(self, arch: EncoderArch) -> None:
        super().__init__()
        if arch.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {arch.kind!r}")
        self.arch = arch
        self.input_layer = irse.input_layer(arch.input_nc, arch.stem_width)
        self.body = irse.body(arch.widths, arch.stem_width)
        self.styles = nn.ModuleList(StyleHead(arch.widths[-1], arch.style_dim, arch.head_convs)
                                    for _ in range(arch.n_styles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(self.input_layer(x))
        codes = torch.stack([head(features) for head in self.styles], dim=1)
        return base_plus_deltas(codes) if self.arch.kind == "e4e" else codes


def infer_arch(state: dict[str, torch.Tensor], kind: str, source: str) -> EncoderArch:
    """The architecture an encoder state dict (keys without the ``encoder.`` prefix) was built with."""
    try:
        stem = state["input_layer.0.weight"]
        units = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
        if len(units) != sum(irse.STAGE_UNITS):
            raise FileFormatError(f"{source} has {len(units)} backbone units, not IR-SE50's "
                                  f"{sum(irse.STAGE_UNITS)}; only IR-SE50 encoders are supported")
        widths = tuple(int(state[f"body.{i}.res_layer.1.weight"].shape[0]) for i in irse.stage_starts())
        n_styles = len({int(m.group(1)) for k in state if (m := re.match(r"styles\.(\d+)\.linear\.weight$", k))})
        head_convs = len({k for k in state if re.match(r"styles\.0\.convs\.\d+\.weight$", k)})
        style_dim = int(state["styles.0.linear.weight"].shape[0])
    except KeyError as exc:
        raise FileFormatError(f"{source} lacks the encoder tensor {exc.args[0]}; it is not an IR-SE50 "
                              "encoder checkpoint (ReStyle or e4e)") from None
    return EncoderArch(kind, n_styles, int(stem.shape[1]), style_dim, widths, int(stem.shape[0]), head_convs)
