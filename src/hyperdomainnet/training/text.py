"""Text-driven single-domain adaptation (StyleGAN-NADA directional loss + indomain regulariser).

Each step: B W+ codes (style mixing with probability ``mixing``) and one set of noise maps;
G_A = the frozen source generator renders them without gradients, G_B = the same generator with
the trainable parameterisation renders the same codes and noise; every CLIP encoder of the
ensemble embeds both batches; the weighted losses are summed over encoders (times the encoder's
weight) and Adam updates the parameterisation only.

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
from ..domain.parameterizations import build_parameterization
from ..losses import direction_loss, global_loss, indomain_angle_loss
from ..stylegan2.formats.rosinality import write_rosinality
from ..stylegan2.generator import Generator, StyleCache
from .config import TextAdaptConfig
from .memory import AdaptiveMicroBatch, MicroBatched, narrow_noise
from .runtime import autocast, resolve_device
from .sampling import PREVIEW_SEED, fixed_latents, sample_noise, sample_ws_per_call
from .steps import (apply_update, ensemble_terms, load_step_state, optimisation, regularization_terms, run_metadata,
                    step_state, training_clip, training_generator)

LAZY_REG_RATIO = 4 / 5  # g_reg_every / (g_reg_every + 1): the official full fine-tuning Adam scaling


class TextTrainer:
    """Adapts a generator to ``config.target`` (relative to ``config.source``) in words."""

    def __init__(self, config: TextAdaptConfig, G: Generator | None = None,
                 clip: ClipEnsemble | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        clip_device = resolve_device(config.clip_device) if config.clip_device else self.device
        self.G = training_generator(config, G, self.device)
        self.clip = training_clip(config, clip, clip_device, prompts=(config.target, config.source))
        options: dict[str, Any] = {"placement": config.placement} if config.parameterization == "domain_vector" else {}
        if config.phase is not None:
            options["phase"] = config.phase
        self.param = build_parameterization(config.parameterization, self.G, **options).to(self.device)
        self.result_name = "generator.pt" if config.parameterization == "full" else "domain.safetensors"
        # All of P's tensors: layers frozen by a phase or by layer selection get no gradient and
        # Adam leaves them alone. Full fine-tuning scales Adam by r = 4/5 as the official trainer.
        ratio = LAZY_REG_RATIO if config.parameterization == "full" else 1.0
        self.optimizer, self.scaler, self.rng = optimisation(self.param.parameters(), config, self.device, ratio)
        self.text = {enc.name: (enc.template_embeddings(config.target)[None].to(enc.device),
                                enc.template_embeddings(config.source)[None].to(enc.device))
                     for enc, _ in self.clip}
        self.preview_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, config.grid_truncation,
                                        self.device)
        self.micro_batch = AdaptiveMicroBatch(config.batch, config.micro_batch, adaptive=config.low_memory)

    def clip_losses(self, src: torch.Tensor, trg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted CLIP loss terms summed over the ensemble (encoder weight × term), on the
        generator's device (the encoders may sit on another)."""
        wanted = [k for k in ("direction", "global", "indomain") if self.config.losses.get(k)]

        def values(enc: ClipEncoder, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            t_trg, t_src = self.text[enc.name]
            return {"direction": lambda: direction_loss(b, a, t_trg, t_src),
                    "global": lambda: global_loss(b, t_trg),
                    "indomain": lambda: indomain_angle_loss(b, a)}

        return ensemble_terms(self.clip, src, trg, wanted, values)

    def select_layers(self) -> None:
        """StyleGAN-NADA adaptive layer selection (global CLIP loss), then train only those layers."""
        cfg = self.config

        def global_clip_loss(images: torch.Tensor) -> torch.Tensor:
            return sum(w * global_loss(enc.encode_images(images), self.text[enc.name][0]).to(self.device)
                       for enc, w in self.clip)

        layers = select_layers(self.G, global_clip_loss, cfg.auto_layer_k, iters=cfg.auto_layer_iters,
                               batch=cfg.auto_layer_batch, generator=self.rng,
                               render=lambda ws: self.param.synthesize(self.G, ws))
        self.param.train_only_layers(layers)

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.config
        self.param.train()
        if cfg.auto_layer_iters > 0:
            self.select_layers()
        calls = 2 if cfg.quirks == "official" else 1
        ws = sample_ws_per_call(self.G, cfg.batch, cfg.mixing, self.rng, self.device, calls)
        noise = [sample_noise(self.G, cfg.noise_mode, cfg.batch, self.rng, self.device) for _ in range(calls)]
        caches = [self.G.style_cache(w) for w in dict.fromkeys(ws)]  # styles and demodulation, shared if one W+
        return self.micro_batch.run(lambda parts: self._step(caches[0], noise[0], caches[-1], noise[-1], parts))

    def _step(self, cache_a: StyleCache, noise_a: list[torch.Tensor | None], cache_b: StyleCache,
              noise_b: list[torch.Tensor | None], parts: list[slice]) -> dict[str, float]:
        """One step with the batch rendered in ``parts`` (the same gradient for any split); G_A
        renders ``cache_a``'s codes with ``noise_a``, G_B ``cache_b``'s with ``noise_b``."""
        cfg = self.config

        def sub(cache: StyleCache, noise: list[torch.Tensor | None],
                part: slice) -> tuple[StyleCache, list[torch.Tensor | None]]:
            return cache.narrow(part.start, part.stop - part.start), narrow_noise(noise, part, cfg.batch)

        def adapted(part: slice) -> torch.Tensor:
            c, n = sub(cache_b, noise_b, part)
            return self.param.synthesize(self.G, c.ws, noise=n, cache=c, checkpoint=cfg.low_memory)

        precision = partial(autocast, self.device, cfg.precision)
        with torch.no_grad(), precision():
            src = torch.cat([self.G.synthesis(c.ws, noise=n, cache=c)
                             for c, n in (sub(cache_a, noise_a, part) for part in parts)])
        trg = MicroBatched(adapted, parts, context=precision)
        with precision():
            terms = self.clip_losses(src, trg.outputs())
        terms.update(regularization_terms(cfg.losses, self.param.regularized_tensors()))
        return apply_update(self.optimizer, cfg.losses, terms, self.scaler, backward=trg.backward)

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions)."""
        return ["source", self.config.target]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """Source row above adapted row, on fixed seeds with constant noise."""
        self.param.eval()
        cache = self.G.style_cache(self.preview_ws)
        src = self.G.synthesis(self.preview_ws, cache=cache)
        trg = self.param.synthesize(self.G, self.preview_ws, cache=cache)
        return torch.cat([src, trg]).float().cpu(), self.preview_ws.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return step_state(self.param, self.optimizer, self.scaler, self.rng)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_step_state(state, self.param, self.optimizer, self.scaler, self.rng)

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        return run_metadata(cfg, self.clip.spec, "text", source=cfg.source, target=cfg.target,
                            parameterization=cfg.parameterization)

    def save_result(self, path: Path) -> None:
        if self.config.parameterization == "full":
            write_rosinality(self.param.to_generator(), path)
        else:
            self.param.to_domain_file(self.G, self.metadata()).save(path)
