"""Pieces every trainer's step shares: the frozen generator and CLIP set-up, regularisers, the
guarded update, result metadata."""
from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..clip import ClipEnsemble
from ..clip.attention import prepare_clip
from ..device import prepare_generator
from ..errors import ConfigError, first_line
from ..loaders import load_generator
from ..losses import offsets_l1, offsets_l2
from ..preflight import check_training_downloads
from ..stylegan2.generator import Generator
from ..version import __version__
from .config import TrainConfig
from .loop import NonFiniteLoss

REGULARIZERS = {"offsets_l2": offsets_l2, "offsets_l1": offsets_l1}


def regularization_terms(losses: dict[str, float], tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The domain-norm terms (offsets_l2 / offsets_l1) that have a non-zero coefficient."""
    return {name: fn(tensors) for name, fn in REGULARIZERS.items() if losses.get(name)}


def loss_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 autocast (gradients below fp16's range would flush to zero);
    a disabled, pass-through scaler for fp32 and bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def training_generator(config: TrainConfig, G: Generator | None, device: torch.device) -> Generator:
    """The frozen generator a trainer renders with: ``G`` (moved to ``device``) or ``config.generator``
    loaded — after the run's pre-flight of downloads (``preflight``: every file not cached listed at
    once when none can be fetched) — prepared for the step (channels-last, compile, low-memory
    recomputation)."""
    if G is None:
        check_training_downloads(config)
    G = G.to(device) if G is not None else load_generator(config.generator, device)
    return prepare_generator(G, device, config.channels_last, config.compile, config.low_memory)


def training_clip(config: TrainConfig, clip: ClipEnsemble | None, device: torch.device,
                  prompts: Sequence[str] | None = None) -> ClipEnsemble:
    """The loss's CLIP ensemble: ``clip`` or ``config.clip`` built on ``device``, with the fast
    attention path and the weights' precision of ``config.clip_precision``.

    ``prompts``: a run whose losses need only these prompts' template embeddings (none for image
    runs) gets them encoded now and, when the ensemble is loaded here, its text towers freed
    (``ClipEncoder.release_text_tower``); a caller's ensemble stays whole. ``None``: keep them.
    """
    ensemble = prepare_clip(clip if clip is not None else ClipEnsemble.from_spec(config.clip, device=device))
    ensemble.set_precision(config.clip_precision)
    if prompts is not None:
        for encoder, _ in ensemble:
            for prompt in prompts:
                encoder.template_embeddings(prompt)
        if clip is None:
            ensemble.release_text_towers()
    return ensemble


def coefficient(losses: dict[str, float], name: str) -> float:
    """A term's loss coefficient: that of its name, or of its last part (``<target>/<term>``)."""
    return losses[name.rpartition("/")[2]]


def apply_update(optimizer: torch.optim.Optimizer, losses: dict[str, float],
                 terms: dict[str, torch.Tensor] | Iterable[dict[str, torch.Tensor]], scaler: torch.amp.GradScaler,
                 backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
                 summarize: Callable[[dict[str, float]], dict[str, float]] | None = None) -> dict[str, float]:
    """One guarded update of Σ coefficient × term (``coefficient``).

    ``terms``: one dict, or parts (dicts made one after the other, e.g. per micro-batch: each part
    is back-propagated before the next is made, so one part's graph lives at a time; the gradient
    is the sum's). The gradients are zeroed; for each part its values join the report — each
    term's value, passed through ``summarize`` (e.g. a mean over processes) when given, and their
    total Σ coefficient × value — and ``NonFiniteLoss`` is raised if that total is not finite,
    else ``backward(s · Σ coefficient × term)``. The optimiser steps last, so a raise leaves it
    untouched; with fp16 scaling s, a step whose gradients hold inf/NaN is skipped and s halves
    (it doubles after 2000 good steps). Returns the report."""
    optimizer.zero_grad(set_to_none=True)
    values: dict[str, float] = {}
    report: dict[str, float] = {"total": 0.0}
    for part in [terms] if isinstance(terms, dict) else terms:
        values.update({k: float(v.detach()) for k, v in part.items()})
        shown = summarize(values) if summarize is not None else values
        report = {"total": sum(coefficient(losses, k) * v for k, v in shown.items()), **shown}
        if not math.isfinite(report["total"]):
            raise NonFiniteLoss(report)
        total = sum(coefficient(losses, k) * v for k, v in part.items())
        if isinstance(total, torch.Tensor):
            backward(scaler.scale(total))
    scaler.step(optimizer)
    scaler.update()
    return report


def step_state(param: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               rng: torch.Generator) -> dict[str, Any]:
    """A trainer's checkpoint state: trained module, Adam, loss scale, sampling RNG."""
    return {"param": param.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": rng.get_state()}


def load_step_state(state: dict[str, Any], param: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, rng: torch.Generator) -> None:
    """Restore what ``step_state`` saved; a checkpoint of another generator, parameterisation or
    network raises a one-line ``ConfigError`` (checkpoints from before loss scaling keep the fresh scale)."""
    try:
        param.load_state_dict(state["param"])
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(f"the checkpoint does not fit this run's model ({first_line(exc)}); "
                          "resume with the run's own config") from None
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng.set_state(state["rng"])


def run_metadata(config: TrainConfig, clip_spec: str, trainer: str, **extra: Any) -> dict[str, Any]:
    """Metadata every result file records: CLIP models, steps, trainer, full config, version, time."""
    return {**extra, "clip": clip_spec, "steps": config.steps, "trainer": trainer,
            "config": config.model_dump(mode="json"), "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
