"""Latent and noise sampling for training steps, from one seeded CPU generator (reproducible, resumable)."""
from __future__ import annotations

import torch

from ..stylegan2.generator import Generator

PREVIEW_SEED = 1234  # seed of the fixed latents every trainer previews


def sample_ws_per_call(G: Generator, batch: int, mixing: float, rng: torch.Generator, device: torch.device,
                       calls: int) -> list[torch.Tensor]:
    """W+ codes of one batch for ``calls`` generator calls: z ~ N(0, I); with probability
    ``mixing`` a second code z2 takes over from a crossover index uniform in [1, n_latent − 1]
    (batch-wise). z and z2 are shared by all calls; each call draws its own crossover, as the
    research code's generator does on every forward. Draw order: z, mixing coin, z2, crossovers."""
    z = torch.randn(batch, G.style_dim, generator=rng).to(device)
    if not (mixing > 0 and float(torch.rand((), generator=rng)) < mixing):
        return [G.ws(z)] * calls
    z2 = torch.randn(batch, G.style_dim, generator=rng).to(device)
    return [G.ws(z, z2=z2, crossover=int(torch.randint(1, G.n_latent, (), generator=rng))) for _ in range(calls)]


def sample_noise(G: Generator, mode: str, batch: int, rng: torch.Generator,
                 device: torch.device) -> list[torch.Tensor | None]:
    """Per-layer noise maps for one render of a batch: fresh N(0, 1) from ``rng`` (``random``),
    else the generator's constant or no noise."""
    if mode != "random":
        return G.make_noise(mode, batch, device)
    return [n.to(device) for n in G.make_noise("random", batch, torch.device("cpu"), generator=rng)]


def fixed_latents(G: Generator, count: int, seed: int, truncation: float,
                  device: torch.device) -> torch.Tensor:
    """Deterministic W+ codes for preview grids (independent of the training RNG)."""
    z = torch.randn(count, G.style_dim, generator=torch.Generator().manual_seed(seed))
    return G.ws(z.to(device), truncation=truncation)
