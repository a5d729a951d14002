"""Embedding augmentations of the HyperDomainNet trainer (official ``td_multiple_resample_and_convex``).

* Convex-hull mixing: a B×B matrix A whose rows are Dirichlet(2/B, …, 2/B) samples mixes every
  batch of per-sample embeddings the same way, y_i = Σ_j A_ij x_j, re-normalised to unit length
  (the official trainer mixes the mapper inputs and the target and source template embeddings).
* Resampling: a unit vector u becomes c·u + √(1 − c²)·u⊥ with c ~ U[cos_min, cos_max] and u⊥ a
  random unit vector orthogonal to u (uniform noise in [−1, 1]^E, projected and normalised), so
  cos(result, u) = c exactly.

Each function takes an optional ``torch.Generator``; given one, the result depends only on its
state (the global RNG is neither used nor advanced).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CONCENTRATION_NUMERATOR = 2.0


def dirichlet_mixing_matrix(batch: int, concentration: float | None = None,
                            generator: torch.Generator | None = None,
                            device: str | torch.device | None = None) -> torch.Tensor:
    """(B, B) matrix, each row ~ Dirichlet(concentration · 1); default concentration 2/B.

    Rows are non-negative and sum to 1.
    """
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    alpha = CONCENTRATION_NUMERATOR / batch if concentration is None else float(concentration)
    if alpha <= 0:
        raise ValueError(f"concentration must be positive, got {alpha}")
    dist = torch.distributions.Dirichlet(torch.full((batch, batch), alpha, dtype=torch.float64))
    if generator is None:
        sample = dist.sample()
    else:
        # torch's gamma sampler takes no generator: seed a forked global RNG from it instead.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sample = dist.sample()
    sample = sample / sample.sum(dim=1, keepdim=True)
    return sample.to(device=device, dtype=torch.float32)


def convex_mix(matrix: torch.Tensor, *tensors: torch.Tensor,
               normalize: bool = True) -> tuple[torch.Tensor, ...]:
    """Mix each (B, …, E) tensor over its batch: y_i = Σ_j A_ij x_j, then (default) y /= ‖y‖.

    Returns one mixed tensor per input, in order.
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be (B, B), got {tuple(matrix.shape)}")
    mixed = []
    for x in tensors:
        if x.shape[0] != matrix.shape[1]:
            raise ValueError(f"tensor batch {x.shape[0]} does not match the {matrix.shape[1]}×"
                             f"{matrix.shape[1]} mixing matrix")
        y = torch.einsum("ij,j...->i...", matrix.to(x), x)
        mixed.append(F.normalize(y, dim=-1) if normalize else y)
    return tuple(mixed)


def resample_embeddings(u: torch.Tensor, cos_min: float = 0.95, cos_max: float = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each vector (last dim) of ``u`` by a unit vector at cosine c ~ U[cos_min, cos_max].

    ``u`` is normalised first; the result has u's shape and unit rows.
    """
    if not -1.0 <= cos_min <= cos_max <= 1.0:
        raise ValueError(f"need -1 <= cos_min <= cos_max <= 1, got {cos_min}, {cos_max}")
    unit = F.normalize(u, dim=-1)
    rng_device = generator.device if generator is not None else u.device
    noise = torch.rand(u.shape, generator=generator, device=rng_device, dtype=u.dtype).to(u.device)
    noise = noise * 2 - 1
    perp = F.normalize(noise - (noise * unit).sum(-1, keepdim=True) * unit, dim=-1)
    c = torch.rand((*u.shape[:-1], 1), generator=generator, device=rng_device, dtype=u.dtype)
    c = (cos_min + (cos_max - cos_min) * c).to(u.device)
    return c * unit + torch.sqrt((1 - c * c).clamp_min(0)) * perp
