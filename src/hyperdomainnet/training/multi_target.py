"""Several targets in one run: K independent domain vectors trained on one shared batch.

The domain vector acts per sample, so one step trains K targets at once:

- the step's B latents and noise are drawn once (as a single-target run draws them);
- the source images G_A(w) do not depend on δ: rendered once, shared by every target;
- G_B renders the K·B batch (the latents repeated K times) with per-sample domain vectors, rows
  k·B … (k+1)·B using δ_k; CLIP encodes the source images once and each target's rows;
- target k's loss terms use only its own rows and its own prompts (text) or reference image
  (``multi_target_image.py``); the total is Σ_k total_k, so ∂total/∂δ_k = ∂total_k/∂δ_k;
- one Adam steps the stacked (K, D) parameter: Adam is element-wise, so this equals K optimisers.

With identical random draws each δ_k equals a single-target run's (up to float rounding of the
larger batch). Results: ``targets/<slug>/domain.safetensors``, one per target, each with the
metadata of the equivalent single-target run.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..clip import ClipEncoder, ClipEnsemble
from ..domain import Domain
from ..domain.parameterizations import DomainVector, StyleOffset, build_parameterization
from ..errors import ConfigError
from ..losses import direction_loss, global_loss, indomain_angle_loss
from ..paths import unique_names
from ..stylegan2.generator import Generator, StyleCache
from .config import TextAdaptConfig, TrainConfig
from .loop import NonFiniteLoss
from .memory import AdaptiveMicroBatch, MicroBatched, micro_slices, narrow_noise
from .runtime import autocast, resolve_device
from .sampling import PREVIEW_SEED, fixed_latents, sample_noise, sample_ws
from .steps import (load_step_state, optimisation, optimizer_step, regularization_terms, run_metadata, step_state,
                    training_clip, training_generator)

RESULTS = "targets"
CLIP_TERMS = ("direction", "global", "indomain")
VECTOR_KINDS = (DomainVector.name, StyleOffset.name)
TermValues = Callable[[ClipEncoder, int, torch.Tensor, torch.Tensor], dict[str, Callable[[], torch.Tensor]]]


def target_slugs(targets: list[str]) -> list[str]:
    """Directory names for the targets: lower-case words joined by '-', numbered when repeated."""
    return unique_names((t.lower() for t in targets), unsafe=r"[^a-z0-9]+", fill="-", fallback="target")


def repeat_cache(cache: StyleCache, k: int) -> StyleCache:
    """The style cache of the codes repeated ``k`` times along the batch (block-wise)."""
    def rep(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(k, *([1] * (t.ndim - 1)))

    return StyleCache(rep(cache.ws), tuple(map(rep, cache.conv_styles)), tuple(map(rep, cache.rgb_styles)),
                      tuple(map(rep, cache.demod)), cache.generator, cache.grad)


def repeat_noise(noise: list[torch.Tensor | None], k: int, batch: int) -> list[torch.Tensor | None]:
    """Per-sample noise maps repeated ``k`` times; maps shared by the batch stay."""
    return [n.repeat(k, *([1] * (n.ndim - 1))) if n is not None and n.shape[0] == batch else n for n in noise]


class StackedVectors(nn.Module):
    """The K domain vectors as one (K, D) parameter, initialised at 0."""

    def __init__(self, k: int, size: int, device: torch.device) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.zeros(k, size, device=device))

    def per_sample(self, start: int, stop: int, batch: int) -> torch.Tensor:
        """Rows [start, stop) of the K·B batch: sample i uses δ_{i // batch}."""
        index = torch.arange(start, stop, device=self.vectors.device) // batch
        return self.vectors.index_select(0, index)


class MultiTargetTrainer:
    """What a run of K targets shares (module docstring): the frozen G, the CLIP ensemble, the
    stacked vectors and their Adam, the step over the K·B batch, previews and checkpoint state.
    Subclasses give ``target_terms`` (every target's loss terms) and ``save_result``.
    ``micro_batch``: render at most that many of the K·B rows at a time (``_parts``); with
    ``config.low_memory`` it halves when a step runs out of device memory."""

    result_name = RESULTS

    def __init__(self, config: TrainConfig, slugs: list[str], G: Generator | None, clip: ClipEnsemble | None,
                 parameterization: str, placement: str, clip_device: str | None = None,
                 micro_batch: int | None = None, prompts: Sequence[str] = ()) -> None:
        if config.quirks == "official":
            raise ConfigError("several targets share one source render per step, which the official quirks (a "
                              "crossover and noise per generator call) do not allow; add --quirks corrected")
        self.config, self.slugs = config, slugs
        self.device = resolve_device(config.device)
        self.G = training_generator(config, G, self.device)
        self.clip = training_clip(config, clip, resolve_device(clip_device) if clip_device else self.device, prompts)
        options = {"placement": placement} if parameterization == DomainVector.name else {}
        # Style offsets and δ before demodulation recompute d(s) from the trained vector.
        self.own_demod = parameterization == StyleOffset.name or options.get("placement") == "before_demod"
        # Its vector kwargs (δ or Δs) and domain-file writer; the trained values live in ``stack``.
        self.param = build_parameterization(parameterization, self.G, **options).to(self.device)
        self.stack = StackedVectors(len(slugs), self.G.domain_size, self.device)
        self.optimizer, self.scaler, self.rng = optimisation([self.stack.vectors], config, self.device)
        self.preview_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, config.grid_truncation,
                                        self.device)
        self.micro_batch = AdaptiveMicroBatch(len(slugs) * config.batch, micro_batch,
                                              adaptive=config.low_memory)

    @property
    def k(self) -> int:
        return len(self.slugs)

    @property
    def const_noise(self) -> list[torch.Tensor | None]:
        """The generator's constant noise maps (shared by any batch)."""
        return self.G.make_noise("const", 1, self.device)

    def _adapted(self, cache: StyleCache, noise: list[torch.Tensor | None], part: slice, batch: int,
                 checkpoint: bool = False) -> torch.Tensor:
        """G_B of rows ``part`` of a batch of K blocks of ``batch`` rows, block k rendered with δ_k
        (``cache``/``noise`` of all K·``batch`` rows).

        Style offsets and δ before demodulation change the demodulated styles, so d is recomputed
        from them, by a matrix product whose rounding depends on the batch size: those renders go
        target by target (a batch of at most ``batch``, as in a single-target run), or at δ = 0
        the rounding noise would set the first step.
        """
        if self.own_demod and part.stop - part.start > batch:
            edges = [part.start, *range((part.start // batch + 1) * batch, part.stop, batch), part.stop]
            return torch.cat([self._adapted(cache, noise, slice(a, b), batch, checkpoint)
                              for a, b in zip(edges, edges[1:])])
        c = cache.narrow(part.start, part.stop - part.start)
        vectors = self.stack.per_sample(part.start, part.stop, batch)
        return self.G.synthesis(c.ws, **self.param._vector_kwargs(vectors), noise=narrow_noise(noise, part, self.k * batch),
                                cache=c, checkpoint=checkpoint)

    def _source(self, cache: StyleCache, noise: list[torch.Tensor | None], part: slice) -> torch.Tensor:
        """G_A of rows ``part`` of the step's batch."""
        c = cache.narrow(part.start, part.stop - part.start)
        return self.G.synthesis(c.ws, noise=narrow_noise(noise, part, self.config.batch), cache=c)

    def per_target_clip_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range, wanted: list[str],
                              values: TermValues) -> dict[str, torch.Tensor]:
        """``<slug>/<term>``: target k's CLIP terms for k in ``targets``, Σ over the ensemble of
        weight × term, on ``trg``'s device; ``values(encoder, k, a, b_k)`` maps term names to
        functions computing them from a = E(src) (encoded once, without gradients) and
        b_k = E(target k's rows of ``trg``, which holds the B rows of each of ``targets`` in turn).

        Each target's B rows are encoded as a batch of B, as a single-target run encodes them:
        at δ = 0 the adapted images equal the source images, b − a is exactly 0 there and the
        first step's direction-loss gradient is the eps branch of the cosine; a batch of another
        size would round b differently and let that noise set the first step's direction.
        """
        b_size = src.shape[0]
        terms: dict[str, torch.Tensor] = {}
        for encoder, weight in self.clip:
            with torch.no_grad():
                a = encoder.encode_images(src)
            for i, k in enumerate(targets):
                computed = values(encoder, k, a, encoder.encode_images(trg[i * b_size:(i + 1) * b_size]))
                for name in wanted:
                    key = f"{self.slugs[k]}/{name}"
                    terms[key] = terms.get(key, 0) + weight * computed[name]().to(trg.device)
        return terms

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """The loss terms ``<slug>/<term>`` (regularisers aside) of every target k in ``targets``
        from the source batch ``src`` (B rows) and the adapted rows ``trg`` of those targets
        (B rows each, in turn)."""
        raise NotImplementedError

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.config
        ws = sample_ws(self.G, cfg.batch, cfg.mixing, self.rng, self.device)
        noise = sample_noise(self.G, cfg.noise_mode, cfg.batch, self.rng, self.device)
        cache = self.G.style_cache(ws)
        return self.micro_batch.run(lambda _: self._step(cache, noise, self._parts()))

    def _parts(self) -> list[slice]:
        """Micro-batches of the K·B rows that never split a target's rows differently from a
        single-target run: whole targets at a time when the micro-batch size s ≥ B, else each
        target's rows in the single run's parts of s (so every adapted image is rendered in the
        same batch as the single run renders it, bit for bit)."""
        batch, size = self.config.batch, self.micro_batch.size
        if size >= batch:
            return micro_slices(self.k * batch, size // batch * batch)
        return [slice(k * batch + p.start, k * batch + p.stop) for k in range(self.k)
                for p in micro_slices(batch, size)]

    def _step(self, cache: StyleCache, noise: list[torch.Tensor | None], parts: list[slice]) -> dict[str, float]:
        cfg = self.config
        batch = cfg.batch
        precision = partial(autocast, self.device, cfg.precision)
        with torch.no_grad(), precision():
            src = torch.cat([self._source(cache, noise, part) for part in micro_slices(batch, min(self.micro_batch.size, batch))])
        big_cache, big_noise = repeat_cache(cache, self.k), repeat_noise(noise, self.k, batch)

        def adapted(part: slice) -> torch.Tensor:
            return self._adapted(big_cache, big_noise, part, batch, cfg.low_memory)

        def regularizers() -> dict[str, torch.Tensor]:
            terms: dict[str, torch.Tensor] = {}
            for slug, vector in zip(self.slugs, self.stack.vectors):
                layers = list(torch.split(vector, self.G.domain_layout))
                terms.update({f"{slug}/{name}": value for name, value in regularization_terms(cfg.losses, layers).items()})
            return terms

        if len(parts) > 1 and all(p.start % batch == 0 and p.stop % batch == 0 for p in parts):
            return self._step_by_targets(src, adapted, parts, regularizers())
        trg = MicroBatched(adapted, parts, context=precision)
        with precision():
            terms = self.target_terms(src, trg.outputs(), range(self.k))
        terms.update(regularizers())
        total = self._weighted(terms)
        report = self._checked_report(total, terms)
        optimizer_step(self.optimizer, total, self.scaler, trg.backward)
        return report

    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ coefficient × term over ``<slug>/<term>`` entries."""
        return sum(self.config.losses[key.rpartition("/")[2]] * value for key, value in terms.items())

    @staticmethod
    def _checked_report(total: torch.Tensor, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The step's log entry; ``NonFiniteLoss`` (before any update) when the total is not finite."""
        report = {"total": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        if not torch.isfinite(total.detach()):
            raise NonFiniteLoss(report)
        return report

    def _step_by_targets(self, src: torch.Tensor, adapted: Callable[[slice], torch.Tensor], parts: list[slice],
                         regularizers: dict[str, torch.Tensor]) -> dict[str, float]:
        """A step in micro-batches of whole targets: target k's loss depends only on its own rows,
        so each part's loss is back-propagated right after its render, with no re-render for the
        whole batch's loss (``MicroBatched``); the gradient is the same, the parts' graphs are
        freed one after the other."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        for part in parts:
            with autocast(self.device, cfg.precision):
                part_terms = self.target_terms(src, adapted(part), range(part.start // cfg.batch, part.stop // cfg.batch))
            part_total = self._weighted(part_terms)
            self._checked_report(part_total, part_terms)
            self.scaler.scale(part_total).backward()
            terms.update({key: value.detach() for key, value in part_terms.items()})
        reg_total = self._weighted(regularizers)
        if isinstance(reg_total, torch.Tensor):
            self.scaler.scale(reg_total).backward()
        terms.update(regularizers)
        report = self._checked_report(self._weighted(terms), terms)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return report

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions)."""
        return ["source", *self.slugs]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """The source row, then one adapted row per target, on fixed seeds with constant noise."""
        n = self.preview_ws.shape[0]
        cache = self.G.style_cache(self.preview_ws)
        src = self.G.synthesis(self.preview_ws, cache=cache)
        trg = self._adapted(repeat_cache(cache, self.k), self.const_noise, slice(0, self.k * n), n)
        return torch.cat([src, trg]).float().cpu(), n

    def state_dict(self) -> dict[str, Any]:
        return step_state(self.stack, self.optimizer, self.scaler, self.rng)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_step_state(state, self.stack, self.optimizer, self.scaler, self.rng)

    def save_result(self, path: Path) -> None:
        raise NotImplementedError

    def _domain(self, k: int, metadata: dict[str, Any]) -> Domain:
        """The domain file of target ``k``'s trained vector with ``metadata``."""
        self.param.load_vector(self.stack.vectors[k].detach())
        return self.param.to_domain_file(self.G, metadata)


class MultiTargetTextTrainer(MultiTargetTrainer):
    """Adapts one generator to every target of ``config.prompt_pairs()`` at once (module docstring)."""

    config: TextAdaptConfig

    def __init__(self, config: TextAdaptConfig, G: Generator | None = None,
                 clip: ClipEnsemble | None = None) -> None:
        if config.parameterization not in VECTOR_KINDS:
            raise ConfigError(f"several targets in one run need a per-sample parameterisation "
                              f"({' or '.join(VECTOR_KINDS)}), not {config.parameterization!r}; train it with one --target")
        if config.auto_layer_iters > 0:
            raise ConfigError("adaptive layer selection changes the trained layers per target; "
                              "train it with one --target per run")
        self.pairs = config.prompt_pairs()
        super().__init__(config, target_slugs([t for t, _ in self.pairs]), G, clip, config.parameterization,
                         config.placement, config.clip_device, config.micro_batch,
                         prompts=[prompt for pair in self.pairs for prompt in pair])
        self.text = {enc.name: [(enc.template_embeddings(t)[None].to(enc.device),
                                 enc.template_embeddings(s)[None].to(enc.device)) for t, s in self.pairs]
                     for enc, _ in self.clip}

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """``<slug>/<term>``: target k's direction, global and indomain terms against its prompts."""
        def values(encoder: ClipEncoder, k: int, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            t_trg, t_src = self.text[encoder.name][k]
            return {"direction": partial(direction_loss, b, a, t_trg, t_src),
                    "global": partial(global_loss, b, t_trg),
                    "indomain": partial(indomain_angle_loss, b, a)}

        wanted = [name for name in CLIP_TERMS if self.config.losses.get(name)]
        return self.per_target_clip_terms(src, trg, targets, wanted, values)

    def single_config(self, k: int) -> TextAdaptConfig:
        """The configuration of the single-target run equivalent to target ``k``."""
        target, source = self.pairs[k]
        return self.config.model_copy(update={"target": target, "source": source, "targets": []})

    def save_result(self, path: Path) -> None:
        """``path/<slug>/domain.safetensors`` for every target (each written atomically)."""
        for k, slug in enumerate(self.slugs):
            cfg = self.single_config(k)
            metadata = run_metadata(cfg, self.clip.spec, "text", source=cfg.source, target=cfg.target,
                                    parameterization=cfg.parameterization)
            (path / slug).mkdir(parents=True, exist_ok=True)
            self._domain(k, metadata).save(path / slug / "domain.safetensors")
