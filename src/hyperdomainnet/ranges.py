"""The ranges of the numbers users give (options, ``FILE*STRENGTH``), and their one check: a
finite number inside its range, else a one-line error naming the option and the range."""
from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

#: Truncation ψ: 1 = none, 0.7 typical, negative mirrors w through the mean.
TRUNCATION = (-2.0, 2.0)
#: A domain's strength α (also each end of an α sweep): 1 = as trained, 0 = the source.
STRENGTH = (-10.0, 10.0)
#: II2S P-norm weight λ_P (1e-3 HyperDomainNet, 1e-2 MindTheGap).
LAMBDA_P_RANGE = (0.0, 100.0)
#: Frames per second of a video.
FPS = (0.1, 240.0)


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, recursively through
    dicts, lists and tuples: what JSON outputs hold, so that they stay valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def finite_in(value: Any, name: str, bounds: tuple[float, float]) -> float:
    """``value`` as a float when finite and within ``bounds`` (inclusive), else a ConfigError."""
    lo, hi = bounds
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not (math.isfinite(number) and lo <= number <= hi):
        raise ConfigError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return number
