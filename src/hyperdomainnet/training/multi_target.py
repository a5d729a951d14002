"""Adaptation to K ≥ 1 targets in one run: one parameterisation per target, trained on one shared batch.

A single-target run is the case K = 1 of the same step; a run of several targets needs a
per-sample parameterisation (a domain vector or StyleSpace offset, which act per sample):

- the step's B latents and noise are drawn once; the source images G_A(w) do not depend on the
  targets: rendered once, shared by every target;
- G_B renders the K·B batch (the latents repeated K times), rows k·B … (k+1)·B in target k's
  domain (``_adapted``); CLIP encodes the source images once and each target's B rows as a
  batch of B;
- target k's loss terms use only its own rows and its own prompts (text) or reference image
  (image); the total is Σ_k total_k, so ∂total/∂θ_k = ∂total_k/∂θ_k;
- one Adam steps every target's tensors: Adam is element-wise, so this equals K optimisers.

So each target's result equals the single-target run's (up to float rounding of the larger
batch). Where the math differs, only K = 1 applies: weight-kind parameterisations and full
fine-tuning (one change for the whole batch), adaptive layer selection (per run) and the
research code's quirks (a crossover and noise per generator call). Results: one run's result
file, or ``targets/<slug>/domain.safetensors`` per target, each with the metadata of the
equivalent single-target run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..clip import ClipEncoder, ClipEnsemble
from ..domain import Domain
from ..domain.parameterizations import Parameterization, StyleOffset, build_parameterization, require_per_sample
from ..errors import ConfigError
from ..paths import unique_names
from ..stylegan2.generator import Generator, StyleCache
from .config import TrainConfig
from .memory import AdaptiveMicroBatch, MicroBatched, micro_slices, narrow_noise
from .sampling import sample_noise, sample_ws_per_call
from .steps import regularization_terms
from .trainer import Trainer

RESULTS = "targets"
TermValues = Callable[[ClipEncoder, int, torch.Tensor, torch.Tensor], dict[str, Callable[[], torch.Tensor]]]


def target_slugs(targets: list[str]) -> list[str]:
    """Directory names for the targets: lower-case words joined by '-', numbered when repeated."""
    return unique_names((t.lower() for t in targets), unsafe=r"[^a-z0-9]+", fill="-", fallback="target")


def repeat_cache(cache: StyleCache, k: int) -> StyleCache:
    """The style cache of the codes repeated ``k`` times along the batch (block-wise)."""
    if k == 1:
        return cache

    def rep(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(k, *([1] * (t.ndim - 1)))

    return StyleCache(rep(cache.ws), tuple(map(rep, cache.conv_styles)), tuple(map(rep, cache.rgb_styles)),
                      tuple(map(rep, cache.demod)), cache.generator, cache.grad)


def repeat_noise(noise: list[torch.Tensor | None], k: int, batch: int) -> list[torch.Tensor | None]:
    """Per-sample noise maps repeated ``k`` times; maps shared by the batch stay."""
    return [n.repeat(k, *([1] * (n.ndim - 1))) if n is not None and n.shape[0] == batch and k > 1 else n
            for n in noise]


def stacked_state(state: dict[str, Any], layout: list[int]) -> dict[str, Any]:
    """A checkpoint of several targets written with the vectors stacked in one (K, D) parameter
    (one Adam tensor), in this trainer's layout: target k's per-conv vectors ``k.layers.l``."""
    def pieces(stacked: torch.Tensor) -> list[torch.Tensor]:  # (K, D) → per target, per conv
        return [piece.clone() for row in stacked for piece in torch.split(row, layout)]

    vectors = state["param"]["vectors"]
    names = [f"{k}.layers.{l}" for k in range(vectors.shape[0]) for l in range(len(layout))]
    old = state["optimizer"]["state"].get(0, {})
    moments = {key: pieces(value) for key, value in old.items() if key != "step"}
    adam = {i: {"step": old["step"].clone(), **{key: parts[i] for key, parts in moments.items()}}
            for i in range(len(names))} if old else {}  # each its own step count: Adam adds to it in place
    groups = [{**group, "params": list(range(len(names)))} for group in state["optimizer"]["param_groups"]]
    return {**state, "param": dict(zip(names, pieces(vectors))), "optimizer": {"state": adam, "param_groups": groups}}


def refuse_official_quirks(config: TrainConfig) -> None:
    """Several targets share one source render per step: a one-line error for the official quirks."""
    if config.quirks == "official":
        raise ConfigError("several targets share one source render per step, which the official quirks (a "
                          "crossover and noise per generator call) do not allow; add --quirks corrected")


class MultiTargetTrainer(Trainer):
    """What a run of K ≥ 1 targets shares (module docstring): the frozen G, the CLIP ensemble, one
    parameterisation per target (``params``; ``param`` is the first) and their Adam, the step over
    the K·B batch, previews and checkpoint state. Subclasses give ``target_terms`` (every target's
    loss terms) and ``target_metadata``.
    ``micro_batch``: render at most that many of the K·B rows at a time (``_parts``); with
    ``config.low_memory`` it halves when a step runs out of device memory."""

    def __init__(self, config: TrainConfig, slugs: list[str], G: Generator | None, clip: ClipEnsemble | None,
                 options: dict[str, Any], clip_device: str | None = None, micro_batch: int | None = None,
                 prompts: list[str] | tuple[str, ...] = (), ratio: float = 1.0) -> None:
        """``options``: the parameterisation's (``build_parameterization``); ``ratio``: Adam's
        (``Trainer.optimise``); ``prompts``: the only text the losses need (``steps.training_clip``)."""
        self.several = len(slugs) > 1  # a config of one target is a single-target run
        if self.several:
            refuse_official_quirks(config)
            require_per_sample(config.parameterization, "training several targets in one run",
                               "train one target per run")
        super().__init__(config, G, clip, prompts, clip_device=clip_device)
        self.slugs = slugs
        self.params = nn.ModuleList([build_parameterization(config.parameterization, self.G, **options)
                                     for _ in slugs]).to(self.device)
        self.param: Parameterization = self.params[0]
        # Style offsets and δ before demodulation recompute d(s) from the trained vector.
        self.own_demod = isinstance(self.param, StyleOffset) or options.get("placement") == "before_demod"
        self.result_name = RESULTS if self.several else ("generator.pt" if config.parameterization == "full"
                                                         else "domain.safetensors")
        self.optimise(self.params if self.several else self.param, ratio)  # the checkpoint layout of each
        self.micro_batch = AdaptiveMicroBatch(len(slugs) * config.batch, micro_batch, adaptive=config.low_memory)

    @property
    def k(self) -> int:
        return len(self.slugs)

    @property
    def official(self) -> bool:
        return self.config.quirks == "official"

    @property
    def const_noise(self) -> list[torch.Tensor | None]:
        """The generator's constant noise maps (shared by any batch)."""
        return self.G.make_noise("const", 1, self.device)

    def key(self, k: int, name: str) -> str:
        """Target k's name of a loss term: ``<slug>/<term>`` in a run of several targets, else the term's."""
        return f"{self.slugs[k]}/{name}" if self.several else name

    def wanted(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if self.config.losses.get(name)]

    # ----- rendering --------------------------------------------------------------------------
    def _adapted(self, cache: StyleCache, noise: list[torch.Tensor | None], part: slice, batch: int,
                 checkpoint: bool = False) -> torch.Tensor:
        """G_B of rows ``part`` of a batch of K blocks of ``batch`` rows, block k in target k's
        domain (``cache``/``noise`` of all K·``batch`` rows).

        Rows of several targets render in one pass with per-sample vectors. Style offsets and δ
        before demodulation change the demodulated styles, so d is recomputed from them, by a
        matrix product whose rounding depends on the batch size: those renders go target by
        target (a batch of at most ``batch``, as in a single-target run), or at δ = 0 the rounding
        noise would set the first step.
        """
        first, last = part.start // batch, (part.stop - 1) // batch
        if first != last and self.own_demod:
            edges = [part.start, *range((first + 1) * batch, part.stop, batch), part.stop]
            return torch.cat([self._adapted(cache, noise, slice(a, b), batch, checkpoint)
                              for a, b in zip(edges, edges[1:])])
        c = cache.narrow(part.start, part.stop - part.start)
        kwargs = {"noise": narrow_noise(noise, part, self.k * batch), "cache": c, "checkpoint": checkpoint}
        if first == last:
            return self.params[first].synthesize(self.G, c.ws, **kwargs)
        index = torch.arange(part.start, part.stop, device=self.device) // batch
        vectors = torch.stack([p.vector() for p in self.params]).index_select(0, index)
        return self.param.synthesize_per_sample(self.G, c.ws, vectors, **kwargs)

    def _source(self, cache: StyleCache, noise: list[torch.Tensor | None], part: slice) -> torch.Tensor:
        """G_A of rows ``part`` of the step's batch."""
        c = cache.narrow(part.start, part.stop - part.start)
        return self.G.synthesis(c.ws, noise=narrow_noise(noise, part, self.config.batch), cache=c)

    # ----- losses -----------------------------------------------------------------------------
    def per_target_clip_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range,
                              values: TermValues) -> dict[str, torch.Tensor]:
        """Target k's CLIP terms (``key(k, term)``) for k in ``targets``, Σ over the ensemble of
        weight × term, on ``trg``'s device; ``values(encoder, k, a, b_k)`` maps term names to
        functions computing them from a = E(src) (encoded once, without gradients) and
        b_k = E(target k's rows of ``trg``, which holds the B rows of each of ``targets`` in turn);
        only the terms with a non-zero loss coefficient are computed.

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
                for name in self.wanted(tuple(computed)):
                    key = self.key(k, name)
                    terms[key] = terms.get(key, 0) + weight * computed[name]().to(trg.device)
        return terms

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """The loss terms (regularisers aside) of every target k in ``targets`` from the source
        batch ``src`` (B rows) and the adapted rows ``trg`` of those targets (B rows each, in turn)."""
        raise NotImplementedError

    def regularizers(self) -> dict[str, torch.Tensor]:
        """Every target's offsets_l2 / offsets_l1 of its parameterisation's regularised tensors."""
        return {self.key(k, name): value for k, param in enumerate(self.params)
                for name, value in regularization_terms(self.config.losses, param.regularized_tensors()).items()}

    # ----- the step ---------------------------------------------------------------------------
    def before_step(self) -> None:
        """What a run does before each step's sampling (adaptive layer selection)."""

    def sample(self) -> tuple[list[torch.Tensor], list[list[torch.Tensor | None]]]:
        """The step's W+ codes and noise maps per generator call: one call (G_A and G_B share them),
        or G_A's and G_B's under official quirks."""
        cfg = self.config
        calls = 2 if self.official else 1
        ws = sample_ws_per_call(self.G, cfg.batch, cfg.mixing, self.rng, self.device, calls)
        return ws, [sample_noise(self.G, cfg.noise_mode, cfg.batch, self.rng, self.device) for _ in range(calls)]

    def train_step(self, step: int) -> dict[str, float]:
        self.params.train()
        self.before_step()
        ws, noise = self.sample()
        caches = [self.G.style_cache(w) for w in dict.fromkeys(ws)]  # styles and demodulation, shared if one W+
        return self.micro_batch.run(lambda _: self._step(caches[0], noise[0], caches[-1], noise[-1], self._parts()))

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

    def _step(self, cache_a: StyleCache, noise_a: list[torch.Tensor | None], cache_b: StyleCache,
              noise_b: list[torch.Tensor | None], parts: list[slice]) -> dict[str, float]:
        """One step, G_A rendering ``cache_a``'s codes with ``noise_a`` and G_B ``cache_b``'s with
        ``noise_b`` (the same unless quirks are official), the K·B rows rendered in ``parts``."""
        batch, low_memory = self.config.batch, self.config.low_memory
        with torch.no_grad(), self.autocast():
            src = torch.cat([self._source(cache_a, noise_a, part)
                             for part in micro_slices(batch, min(self.micro_batch.size, batch))])
        big_cache, big_noise = repeat_cache(cache_b, self.k), repeat_noise(noise_b, self.k, batch)

        def adapted(part: slice) -> torch.Tensor:
            return self._adapted(big_cache, big_noise, part, batch, low_memory)

        if len(parts) > 1 and all(p.start % batch == 0 and p.stop % batch == 0 for p in parts):
            return self.update(self._terms_by_targets(src, adapted, parts))
        trg = MicroBatched(adapted, parts, context=self.autocast)
        with self.autocast():
            terms = self.target_terms(src, trg.outputs(), range(self.k))
        return self.update({**terms, **self.regularizers()}, backward=trg.backward)

    def _terms_by_targets(self, src: torch.Tensor, adapted: Callable[[slice], torch.Tensor],
                          parts: list[slice]) -> Iterator[dict[str, torch.Tensor]]:
        """The terms in parts of whole targets, each part's made after the last one's backward:
        target k's loss depends only on its own rows, so a part's loss is back-propagated right
        after its render, with no re-render for the whole batch's loss (``MicroBatched``); the
        gradient is the same, the parts' graphs are freed one after the other. Regularisers last."""
        batch = self.config.batch
        for part in parts:
            with self.autocast():
                yield self.target_terms(src, adapted(part), range(part.start // batch, part.stop // batch))
        yield self.regularizers()

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions)."""
        return ["source", *self.slugs]

    # ----- previews, results, state -------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """The source row, then one adapted row per target, on fixed seeds with constant noise;
        rendered a micro-batch of whole targets at a time, each part moved to the CPU as it comes."""
        self.params.eval()
        n = self.preview_ws.shape[0]
        cache = self.G.style_cache(self.preview_ws)
        src = self.G.synthesis(self.preview_ws, cache=cache)
        repeated, rows = repeat_cache(cache, self.k), self.k * n
        step = n * max(1, self.micro_batch.size // n)
        trg = [self._adapted(repeated, self.const_noise, slice(a, min(a + step, rows)), n).float().cpu()
               for a in range(0, rows, step)]
        return torch.cat([src.float().cpu(), *trg]), n

    def target_metadata(self, k: int) -> dict[str, Any]:
        """The result metadata of target ``k`` (that of the equivalent single-target run)."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        return self.target_metadata(0)

    def domain(self, k: int) -> Domain:
        """Target ``k``'s domain file."""
        return self.params[k].to_domain_file(self.G, self.target_metadata(k))

    def save_target(self, k: int, path: Path) -> None:
        """Write target ``k``'s result to ``path`` (atomically)."""
        self.domain(k).save(path)

    def save_result(self, path: Path) -> None:
        """One run's result at ``path``, or ``path/<slug>/domain.safetensors`` for every target."""
        if not self.several:
            self.save_target(0, path)
            return
        for k, slug in enumerate(self.slugs):
            (path / slug).mkdir(parents=True, exist_ok=True)
            self.save_target(k, path / slug / "domain.safetensors")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """``Trainer.load_state_dict``, also of runs of several targets checkpointed with their
        vectors stacked in one parameter (``stacked_state``)."""
        if self.several and set(state.get("param", {})) == {"vectors"}:
            state = stacked_state(state, list(self.G.domain_layout))
        super().load_state_dict(state)
