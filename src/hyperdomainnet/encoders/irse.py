"""IR-SE50, the ArcFace-style face-recognition backbone ReStyle encoders are built on.

Input layer: 3×3 conv (C_in → w₀, no bias) → BatchNorm → PReLU. Body: four stages of
bottleneck units with (units) = (3, 4, 14, 3) and widths w = (64, 128, 256, 512) in the released
models; the first unit of each stage has stride 2, so a 256×256 input gives a 16×16 map.

A unit computes ``residual(x) + shortcut(x)`` with

* residual = BN → 3×3 conv (stride 1) → PReLU → 3×3 conv (unit stride) → BN → squeeze-excitation;
* shortcut = max-pool 1×1 with the stride (same width) or 1×1 conv with the stride → BN;
* squeeze-excitation: x · sigmoid(conv₁ₓ₁(ReLU(conv₁ₓ₁(avg-pool(x))))), hidden width = width/16.

Module and parameter names follow the released checkpoints (``input_layer.*``, ``body.N.*``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

STAGE_UNITS: tuple[int, ...] = (3, 4, 14, 3)
WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
STEM_WIDTH = 64
SE_REDUCTION = 16


class SqueezeExcite(nn.Module):
    """x · sigmoid(fc2(ReLU(fc1(mean over space of x)))), fc1/fc2 bias-free 1×1 convs."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """One IR-SE unit ``in_channels → depth`` with the given stride (module docstring)."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def stage_starts(units: Sequence[int] = STAGE_UNITS) -> list[int]:
    """Index in ``body`` of each stage's first unit: [0, 3, 7, 21] for IR-SE50."""
    return [sum(units[:k]) for k in range(len(units))]


def stage_ends(units: Sequence[int] = STAGE_UNITS) -> list[int]:
    """Index in ``body`` of each stage's last unit (its output map): [2, 6, 20, 23] for IR-SE50."""
    return [sum(units[:k + 1]) - 1 for k in range(len(units))]


def stage_maps(body: Iterable[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> list[torch.Tensor]:
    """The output map of each stage of ``body`` (the units of :func:`body`, or stand-ins computing
    the same) for the stem output ``x``."""
    ends, maps = set(stage_ends()), []
    for i, unit in enumerate(body):
        x = unit(x)
        if i in ends:
            maps.append(x)
    return maps


def input_layer(in_channels: int, width: int = STEM_WIDTH) -> nn.Sequential:
    """3×3 conv (no bias) → BatchNorm → PReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                         nn.PReLU(width))


def body(widths: Sequence[int] = WIDTHS, stem_width: int = STEM_WIDTH,
         units: Sequence[int] = STAGE_UNITS) -> nn.Sequential:
    """The four IR-SE stages as one flat ``Sequential`` of units (first unit of a stage: stride 2)."""
    layers: list[nn.Module] = []
    previous = stem_width
    for width, count in zip(widths, units):
        layers.append(BottleneckIRSE(previous, width, 2))
        layers.extend(BottleneckIRSE(width, width, 1) for _ in range(count - 1))
        previous = width
    return nn.Sequential(*layers)
