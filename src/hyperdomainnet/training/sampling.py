"""Latent and noise sampling for training steps, from one seeded CPU generator (reproducible, resumable)."""
from __future__ import annotations

import torch

from ..stylegan2.generator import Generator

PREVIEW_SEED = 1234  # seed of the fixed latents every trainer previews


def sample_ws(G: Generator, batch: int, mixing: float, rng: torch.Generator,
              device: torch.device) -> torch.Tensor:
    """W+ codes for a batch: z ~ N(0, I); with probability ``mixing`` a second code takes over
    from a crossover index uniform in [1, n_latent − 1] (batch-wise, as the official trainers)."""
    z = torch.randn(batch, G.style_dim, generator=rng)
    z2 = crossover = None
    if mixing > 0 and float(torch.rand((), generator=rng)) < mixing:
        z2 = torch.randn(batch, G.style_dim, generator=rng)
        crossover = int(torch.randint(1, G.n_latent, (), generator=rng))
    return G.ws(z.to(device), z2=None if z2 is None else z2.to(device), crossover=crossover)


def sample_noise(G: Generator, mode: str, batch: int, rng: torch.Generator,
                 device: torch.device) -> list[torch.Tensor | None]:
    """Per-layer noise shared by the source and adapted renders of a step."""
    if mode != "random":
        return G.make_noise(mode, batch, device)
    return [n.to(device) for n in G.make_noise("random", batch, torch.device("cpu"), generator=rng)]


def fixed_latents(G: Generator, count: int, seed: int, truncation: float,
                  device: torch.device) -> torch.Tensor:
    """Deterministic W+ codes for preview grids (independent of the training RNG)."""
    z = torch.randn(count, G.style_dim, generator=torch.Generator().manual_seed(seed))
    return G.ws(z.to(device), truncation=truncation)
