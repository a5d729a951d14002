"""Pieces every single-domain trainer's step shares: regularisers, the update, result metadata."""
from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

import torch

from .. import __version__
from ..losses import offsets_l1, offsets_l2
from .config import TrainConfig
from .loop import NonFiniteLoss

REGULARIZERS = {"offsets_l2": offsets_l2, "offsets_l1": offsets_l1}


def regularization_terms(losses: dict[str, float], tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The domain-norm terms (offsets_l2 / offsets_l1) that have a non-zero coefficient."""
    return {name: fn(tensors) for name, fn in REGULARIZERS.items() if losses.get(name)}


def apply_update(optimizer: torch.optim.Optimizer, losses: dict[str, float], terms: dict[str, torch.Tensor],
                 backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> dict[str, float]:
    """total = Σ coefficient × term; raise ``NonFiniteLoss`` before touching the optimiser if it is
    not finite; otherwise backward and one optimiser step. Returns the reported terms."""
    total = sum(losses[name] * value for name, value in terms.items())
    report = {"total": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
    if not math.isfinite(report["total"]):
        raise NonFiniteLoss(report)
    optimizer.zero_grad(set_to_none=True)
    backward(total)
    optimizer.step()
    return report


def run_metadata(config: TrainConfig, clip_spec: str, trainer: str, **extra: Any) -> dict[str, Any]:
    """Metadata every result file records: CLIP models, steps, trainer, full config, version, time."""
    return {**extra, "clip": clip_spec, "steps": config.steps, "trainer": trainer,
            "config": config.model_dump(mode="json"), "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
