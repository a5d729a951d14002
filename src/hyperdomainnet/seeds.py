"""The seeds every random number generator here takes: integers in [0, MAX_SEED].

``MAX_SEED`` is the largest signed 64-bit integer, so a seed and the offsets added to it
(a run's steps, a range's later seeds) stay within what ``torch.Generator.manual_seed``
(and NumPy) accept."""
from __future__ import annotations

from .errors import ConfigError

MAX_SEED = 2**63 - 1
#: The most seeds one command renders (FID uses 50,000).
MAX_SEEDS = 1_000_000


def seed_range(first: int, count: int, option: str = "--seed") -> range:
    """The ``count`` seeds from ``first``, or a one-line error when they leave [0, MAX_SEED]."""
    if not 1 <= count <= MAX_SEEDS:
        raise ConfigError(f"the number of seeds must be in [1, {MAX_SEEDS:,}], got {count:,}")
    if not 0 <= first <= MAX_SEED - (count - 1):
        raise ConfigError(f"{option} {first}: seeds must lie in [0, {MAX_SEED}] (2^63 − 1), "
                          f"the last of {count} included")
    return range(first, first + count)
