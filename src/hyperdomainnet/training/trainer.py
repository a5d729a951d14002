"""The spine every trainer shares: device and precision (resolved once; the given config is not
changed, the trainer keeps a copy with the resolved precision), the frozen generator, the CLIP
ensemble, the sampling RNG (seeded with ``config.seed``), the preview latents, the optimiser of
the trained module with its loss scaler, the guarded update and the checkpoint state.

A trainer builds its trained module, hands it to ``optimise`` and implements ``train_step``,
``preview``, ``metadata`` and ``save_result``; what it checkpoints besides the trained module,
Adam, the loss scale and the RNG it adds in ``state_dict`` / ``load_state_dict``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..clip import ClipEnsemble
from ..device import autocast, resolve_device, resolve_precision
from ..stylegan2.generator import Generator
from .config import TrainConfig
from .sampling import PREVIEW_SEED, fixed_latents
from .steps import apply_update, load_step_state, loss_scaler, step_state, training_clip, training_generator


class Trainer:
    """Set-up and state shared by every trainer (module docstring)."""

    result_name = "domain.safetensors"
    trained: nn.Module
    optimizer: torch.optim.Adam
    scaler: torch.amp.GradScaler

    def __init__(self, config: TrainConfig, G: Generator | None = None, clip: ClipEnsemble | None = None,
                 prompts: Sequence[str] | None = None, device: torch.device | None = None,
                 clip_device: str | None = None) -> None:
        """``prompts``: see ``steps.training_clip``; ``device``: instead of ``config.device`` (a
        distributed run's own); ``clip_device``: the CLIP ensemble's, when not the generator's."""
        self.device = device if device is not None else resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.auto_precision = config.precision == "auto"
        self.config = config.model_copy(update={"precision": self.precision})
        self.G = training_generator(self.config, G, self.device)
        self.clip = training_clip(self.config, clip, resolve_device(clip_device) if clip_device else self.device,
                                  prompts)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.preview_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, config.grid_truncation,
                                        self.device)

    def optimise(self, module: nn.Module, ratio: float = 1.0) -> None:
        """Train ``module``: Adam over all its parameters (those without gradients stay as they are)
        with lr·r, betas^r and the config's weight decay (r = ``ratio``), and the loss scaler of the
        resolved precision (``steps.loss_scaler``)."""
        cfg = self.config
        self.trained = module
        betas = (cfg.betas[0] ** ratio, cfg.betas[1] ** ratio)
        self.optimizer = torch.optim.Adam(list(module.parameters()), lr=cfg.lr * ratio, betas=betas,
                                          weight_decay=cfg.weight_decay)
        self.scaler = loss_scaler(self.device, self.precision)

    def autocast(self) -> AbstractContextManager:
        """The forward passes' mixed-precision context (the resolved precision)."""
        return autocast(self.device, self.precision)

    def update(self, terms: dict[str, torch.Tensor],
               backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
               summarize: Callable[[dict[str, float]], dict[str, float]] | None = None) -> dict[str, float]:
        """``steps.apply_update`` of the loss terms with the config's coefficients."""
        return apply_update(self.optimizer, self.config.losses, terms, self.scaler, backward, summarize)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint state (``steps.step_state``); trainers add what else they need."""
        return step_state(self.trained, self.optimizer, self.scaler, self.rng)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (``steps.load_step_state``)."""
        load_step_state(state, self.trained, self.optimizer, self.scaler, self.rng)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns the loss terms (``total`` included)."""
        raise NotImplementedError

    def preview(self) -> tuple[torch.Tensor, int]:
        """Preview images (N, 3, H, W) in [−1, 1] and the number per grid row."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """What the result file records (``steps.run_metadata`` and the trainer's own entries)."""
        raise NotImplementedError

    def save_result(self, path: Path) -> None:
        """Write the shareable result (domain file, generator, hypernetwork) atomically."""
        raise NotImplementedError
