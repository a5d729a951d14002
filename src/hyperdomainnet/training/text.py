"""Text-driven adaptation (StyleGAN-NADA directional loss + indomain regulariser) to one or several
targets described in words, each relative to its source (the stacked step of ``multi_target``).

Each step: B W+ codes (style mixing with probability ``mixing``) and one set of noise maps;
G_A = the frozen source generator renders them without gradients, G_B = the same generator with
each target's trainable parameterisation renders the same codes and noise; every CLIP encoder of
the ensemble embeds both batches; each target's weighted losses against its own prompts are
summed over encoders (times the encoder's weight) and Adam updates the parameterisations only.

G_A and G_B share the step's crossover index and noise maps; with ``quirks="official"`` each
render draws its own crossover index and noise maps, as the research code's generator does on
every call.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..clip import ClipEncoder, ClipEnsemble
from ..domain.layer_selection import select_layers
from ..errors import ConfigError
from ..losses import direction_loss, global_loss, indomain_angle_loss
from ..stylegan2.formats.rosinality import write_rosinality
from ..stylegan2.generator import Generator
from .config import TextAdaptConfig
from .multi_target import MultiTargetTrainer, target_slugs
from .steps import run_metadata

LAZY_REG_RATIO = 4 / 5  # g_reg_every / (g_reg_every + 1): the official full fine-tuning Adam scaling


class TextTrainer(MultiTargetTrainer):
    """Adapts a generator to every target of ``config.prompt_pairs()`` (the single ``target``, or
    each of ``targets``) relative to its source, in words."""

    config: TextAdaptConfig

    def __init__(self, config: TextAdaptConfig, G: Generator | None = None,
                 clip: ClipEnsemble | None = None) -> None:
        self.pairs = config.prompt_pairs()
        if len(self.pairs) > 1 and config.auto_layer_iters > 0:
            raise ConfigError("adaptive layer selection changes the trained layers per target; "
                              "train it with one --target per run")
        options: dict[str, Any] = {"placement": config.placement} if config.parameterization == "domain_vector" else {}
        if config.phase is not None:
            options["phase"] = config.phase
        # All of P's tensors: layers frozen by a phase or by layer selection get no gradient and
        # Adam leaves them alone. Full fine-tuning scales Adam by r = 4/5 as the official trainer.
        super().__init__(config, target_slugs([t for t, _ in self.pairs]), G, clip, options, config.clip_device,
                         config.micro_batch, prompts=[prompt for pair in self.pairs for prompt in pair],
                         ratio=LAZY_REG_RATIO if config.parameterization == "full" else 1.0)
        self.text = {enc.name: [(enc.template_embeddings(t)[None].to(enc.device),
                                 enc.template_embeddings(s)[None].to(enc.device)) for t, s in self.pairs]
                     for enc, _ in self.clip}

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """Target k's direction, global and indomain terms against its prompts."""
        def values(encoder: ClipEncoder, k: int, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            t_trg, t_src = self.text[encoder.name][k]
            return {"direction": partial(direction_loss, b, a, t_trg, t_src),
                    "global": partial(global_loss, b, t_trg),
                    "indomain": partial(indomain_angle_loss, b, a)}

        return self.per_target_clip_terms(src, trg, targets, values)

    def before_step(self) -> None:
        """StyleGAN-NADA adaptive layer selection (global CLIP loss) when on, then train only those layers."""
        cfg = self.config
        if cfg.auto_layer_iters <= 0:
            return

        def global_clip_loss(images: torch.Tensor) -> torch.Tensor:
            return sum(w * global_loss(enc.encode_images(images), self.text[enc.name][0][0]).to(self.device)
                       for enc, w in self.clip)

        layers = select_layers(self.G, global_clip_loss, cfg.auto_layer_k, iters=cfg.auto_layer_iters,
                               batch=cfg.auto_layer_batch, generator=self.rng,
                               render=lambda ws: self.param.synthesize(self.G, ws))
        self.param.train_only_layers(layers)

    def single_config(self, k: int) -> TextAdaptConfig:
        """The configuration of the single-target run equivalent to target ``k``."""
        target, source = self.pairs[k]
        return self.config.model_copy(update={"target": target, "source": source, "targets": []})

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions): the source, then each target prompt."""
        return ["source", *(target for target, _ in self.pairs)]

    def target_metadata(self, k: int) -> dict[str, Any]:
        cfg = self.single_config(k)
        return run_metadata(cfg, self.clip.spec, "text", source=cfg.source, target=cfg.target,
                            parameterization=cfg.parameterization)

    def save_target(self, k: int, path: Path) -> None:
        """A domain file, or the fine-tuned generator (.pt) of full fine-tuning."""
        if self.config.parameterization == "full":
            write_rosinality(self.params[k].to_generator(), path)
        else:
            super().save_target(k, path)
