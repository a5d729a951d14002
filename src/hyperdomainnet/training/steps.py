"""Pieces every trainer's step shares: regularisers, the update, result metadata."""
from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from .. import __version__
from ..clip import ClipEncoder, ClipEnsemble
from ..errors import ConfigError
from ..loaders import load_generator
from ..losses import offsets_l1, offsets_l2
from ..preflight import check_training_downloads
from ..stylegan2.generator import Generator
from .config import TrainConfig
from .loop import NonFiniteLoss
from .runtime import prepare_clip, prepare_generator

REGULARIZERS = {"offsets_l2": offsets_l2, "offsets_l1": offsets_l1}


def regularization_terms(losses: dict[str, float], tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The domain-norm terms (offsets_l2 / offsets_l1) that have a non-zero coefficient."""
    return {name: fn(tensors) for name, fn in REGULARIZERS.items() if losses.get(name)}


def ensemble_terms(clip: ClipEnsemble, src: torch.Tensor, trg: torch.Tensor, wanted: Iterable[str],
                   values: Callable[[ClipEncoder, torch.Tensor, torch.Tensor], dict[str, Callable[[], torch.Tensor]]],
                   ) -> dict[str, torch.Tensor]:
    """For each name in ``wanted``: Σ over the encoders of weight × term, on ``trg``'s device. Each
    encoder embeds a = E(src) without gradients and b = E(trg); ``values(encoder, a, b)`` maps term
    names to functions computing them (only the wanted ones are called)."""
    wanted = list(wanted)
    terms: dict[str, torch.Tensor] = {}
    for encoder, weight in clip:
        with torch.no_grad():
            a = encoder.encode_images(src)
        b = encoder.encode_images(trg)
        computed = values(encoder, a, b)
        for name in wanted:
            terms[name] = terms.get(name, 0) + weight * computed[name]().to(trg.device)
    return terms


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


def optimisation(params: Iterable[torch.nn.Parameter], config: TrainConfig, device: torch.device,
                 ratio: float = 1.0) -> tuple[torch.optim.Adam, torch.amp.GradScaler, torch.Generator]:
    """A trainer's Adam (lr·r, betas^r, the config's weight decay; r = ``ratio``), loss scaler
    (``loss_scaler``) and sampling RNG seeded with ``config.seed``."""
    betas = (config.betas[0] ** ratio, config.betas[1] ** ratio)
    optimizer = torch.optim.Adam(list(params), lr=config.lr * ratio, betas=betas, weight_decay=config.weight_decay)
    return optimizer, loss_scaler(device, config.precision), torch.Generator().manual_seed(config.seed)


def optimizer_step(optimizer: torch.optim.Optimizer, total: torch.Tensor, scaler: torch.amp.GradScaler,
                   backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> None:
    """Zero the gradients, ``backward(s · total)``, unscale by s and step; with fp16 scaling a
    step whose gradients hold inf/NaN is skipped and s halves (it doubles after 2000 good steps)."""
    optimizer.zero_grad(set_to_none=True)
    backward(scaler.scale(total))
    scaler.step(optimizer)
    scaler.update()


def apply_update(optimizer: torch.optim.Optimizer, losses: dict[str, float], terms: dict[str, torch.Tensor],
                 scaler: torch.amp.GradScaler,
                 backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
                 summarize: Callable[[dict[str, float]], dict[str, float]] | None = None) -> dict[str, float]:
    """total = Σ coefficient × term; raise ``NonFiniteLoss`` before touching the optimiser if the
    reported total is not finite; otherwise ``optimizer_step``. Returns the reported terms:
    each term's value, passed through ``summarize`` (e.g. a mean over processes) when given, and
    their total Σ coefficient × value."""
    total = sum(losses[name] * value for name, value in terms.items())
    values = {k: float(v.detach()) for k, v in terms.items()}
    if summarize is not None:
        values = summarize(values)
    report = {"total": sum(losses[k] * v for k, v in values.items()), **values}
    if not math.isfinite(report["total"]):
        raise NonFiniteLoss(report)
    optimizer_step(optimizer, total, scaler, backward)
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
        raise ConfigError(f"the checkpoint does not fit this run's model ({str(exc).splitlines()[0]}); "
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
