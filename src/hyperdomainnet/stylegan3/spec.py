"""``random:sg3-<config>:<size>[:key=value…]`` specs: StyleGAN3 generators with random weights.

Keys: ``channel_base``, ``channel_max``, ``n_mlp``, ``style_dim``, ``conv_clamp``, ``seed`` (0
unless given); e.g. ``random:sg3-t:32:channel_base=256:channel_max=16:style_dim=16`` for tests.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .generator import CONFIGS, StyleGAN3Arch, StyleGAN3Generator

PREFIX = "random:sg3-"
KEYS: dict[str, type] = {"channel_base": int, "channel_max": int, "n_mlp": int, "style_dim": int,
                         "conv_clamp": float, "seed": int}
EXAMPLE = "random:sg3-t:32:channel_base=256:channel_max=16:style_dim=16"
CALIBRATION_SAMPLES = 16  # latents for the magnitude calibration (1 above 64 px: a full-size render each)


def is_stylegan3_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_stylegan3_spec(spec: str) -> tuple[StyleGAN3Arch, int]:
    """``random:sg3-r:64:channel_max=32`` → (architecture, seed)."""
    config, _, rest = spec[len(PREFIX):].partition(":")
    if config not in CONFIGS:
        raise ConfigError(f"unknown StyleGAN3 config {config!r} in {spec!r}; use random:sg3-t:<size> or "
                          f"random:sg3-r:<size>")
    parts = rest.split(":")
    try:
        size = int(parts[0])
        options: dict[str, Any] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key not in KEYS or not value:
                raise KeyError(key)
            options[key] = KEYS[key](value)
    except KeyError as exc:
        raise ConfigError(f"unknown option {exc.args[0]!r} in {spec!r}; use random:sg3-<t|r>:<size>[:key=value…] "
                          f"with keys {', '.join(KEYS)}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid generator spec {spec!r} ({exc}); e.g. {EXAMPLE}") from None
    seed = options.pop("seed", 0)
    return StyleGAN3Arch(size=size, config=config, **options), seed  # type: ignore[arg-type]


def canonical_stylegan3_spec(arch: StyleGAN3Arch, seed: int) -> str:
    """The canonical spelling (options in a fixed order, defaults omitted)."""
    default = StyleGAN3Arch(size=arch.size, config=arch.config)
    parts = [f"{PREFIX}{arch.config}:{arch.size}"]
    parts += [f"{k}={getattr(arch, k)}" for k in KEYS if k != "seed" and getattr(arch, k) != getattr(default, k)]
    return ":".join(parts + ([f"seed={seed}"] if seed else []))


@torch.no_grad()
def calibrate_magnitudes(G: StyleGAN3Generator, samples: int = CALIBRATION_SAMPLES) -> None:
    """Set each layer's ``magnitude_ema`` to the mean square of its input over random latents,
    layer by layer, as training leaves it (so random generators give images of a natural range)."""
    ws = G.ws(torch.randn(samples, G.style_dim))
    x = G.input(ws[:, 0])
    for i, layer in enumerate(G.layers):
        layer.magnitude_ema.fill_(float(x.square().mean()))
        x = layer(x, layer.affine(ws[:, i + 1]))


def random_stylegan3(spec: str) -> StyleGAN3Generator:
    """A StyleGAN3 generator with random weights drawn deterministically from the spec's seed,
    magnitude EMAs calibrated (``calibrate_magnitudes``)."""
    arch, seed = parse_stylegan3_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN3Generator(arch)
        calibrate_magnitudes(G, CALIBRATION_SAMPLES if arch.size <= 64 else 1)
    G.identity = {"name": canonical_stylegan3_spec(arch, seed), "sha256": None, "arch": arch.to_dict()}
    return G
