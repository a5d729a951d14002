"""HyperDomainNet training on a text domain list (official ``td_multiple_resample_and_convex``;
``td_multiple_base`` is the same step with the augmentations off).

Setup: the list's N domains (target t_n, source s_n); mapper inputs m_n = E_map(t_n) (the raw
target, template "{}", normalised; E_map = ``mapper_clip``); per loss encoder E the template
stacks T_E(t_n), T_E(s_n) (79 ImageNet templates, rows normalised).

Each step draws one plan for the global batch of B samples from the seeded RNG (identical on
every rank; under torchrun each rank renders its slice, see ``training/distributed.py``):

1. W+ codes (style mixing with probability ``mixing``), a noise seed per sample, domains
   d_1…d_B uniform with replacement;
2. ``convex_hull``: A with rows ~ Dirichlet(2/B); x_i = normalise(Σ_j A_ij m_{d_j}) and the
   template stacks likewise (each template row re-normalised); otherwise x_i = m_{d_i};
3. ``resample``: each target template embedding u → c·u + √(1−c²)·u⊥, c ~ U[resample_cos, 1];
4. δ_i = HyperDomainNet(x_i) (training-mode BatchNorm over the batch); G_A(w_i) without and
   G_B(w_i; δ_i) with gradients, sharing noise;
5. ``crop`` < 1: one random square crop of side ⌊crop·size⌋ for the batch, the same for both;
6. per loss encoder E (weight λ_E), a = E(G_A), b = E(G_B), normalised:
   direction    = Σ_E λ_E mean_i [1 − cos(b_i − a_i, mean_k(T_trg,ik − T_src,ik))]
   tt_direction = Σ_E λ_E mean_{i<j, c_i≠c_j} [1 − cos(b_i − b_j, mean_k(T_trg,ik − T_trg,jk))]
   global       = Σ_E λ_E mean_i [1 − cos(b_i, mean_k T_trg,ik)];  offsets_l2 = Σ_l mean(δ_l²)
   where c_i = Σ_j A_ij e_{d_j} is sample i's mixture of domains (e_{d_i} without mixing): pairs
   with the same mixture have a zero text delta and are left out.
Total = Σ coefficient × term; Adam updates the hypernetwork only.

``quirks="official"`` reproduces the released trainer instead: with resampling on, every loss
encoder but ``mapper_clip`` is dropped; on the augmented path (convex_hull, resample or crop on,
i.e. the td_multiple trainer) image embeddings are not normalised; tt_direction keeps the
same-mixture pairs (each adds a constant 1, diluting the gradient); G_A and G_B get independent
noise and independent crops. In neither mode is the released crop's 1024-px assumption kept
(offsets in [0, 204), side 819: non-square or empty crops at other sizes); crops scale with G.
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..clip import ClipEncoder, ClipEnsemble, load_clip
from ..errors import HDNError
from ..hypernet.domains import DomainList, load_domain_list
from ..hypernet.model import HyperDomainNet, prompt_embeddings
from ..hypernet.samplers import convex_mix, dirichlet_mixing_matrix, resample_embeddings
from ..losses import direction_loss, global_loss, offsets_l1, offsets_l2, tt_direction_loss
from ..stylegan2.generator import Generator
from ..loaders import load_generator
from .config import HypernetConfig
from .distributed import all_gather, data_parallel, init_distributed, mean_over_ranks
from .loop import NonFiniteLoss
from .runtime import autocast, prepare_clip, prepare_generator
from .sampling import PREVIEW_SEED, fixed_latents, sample_ws
from .steps import loss_scaler, optimizer_step


SEED_RANGE = 2**62
RESULT_NAME = "hypernet.safetensors"


def seeded_noise(G: Generator, seeds: Sequence[int], device: torch.device) -> list[torch.Tensor]:
    """Per-layer noise maps (B, 1, h, w), sample i drawn on ``device`` from a generator seeded
    ``seeds[i]`` (so a sample's noise does not depend on the batch it is rendered in)."""
    per_sample = [G.make_noise("random", 1, device, torch.Generator(device).manual_seed(int(s)))
                  for s in seeds]
    return [torch.cat(layer) for layer in zip(*per_sample)]


def square_crop(images: torch.Tensor, offset: tuple[int, int] | None, side: int) -> torch.Tensor:
    """images[..., y:y+side, x:x+side] for offset (y, x); unchanged when offset is None."""
    if offset is None:
        return images
    y, x = offset
    return images[..., y:y + side, x:x + side]


def mixture_ids(domains: torch.Tensor, mixing: torch.Tensor | None) -> list[Any]:
    """Per-sample identity of the text target: the domain index, or under convex-hull mixing the
    mixture weights over the batch's distinct domains (rounded), so equal ids ⇔ equal targets."""
    if mixing is None:
        return domains.tolist()
    _, inverse = domains.unique(return_inverse=True)
    weights = mixing.double() @ F.one_hot(inverse).double().to(mixing.device)
    return [tuple(row) for row in weights.round(decimals=6).tolist()]


@dataclass
class BatchPlan:
    """Everything random about one step, for the global batch (identical on every rank)."""

    ws: torch.Tensor                      # (B, n_latent, style_dim)
    noise_trg: list[int]                  # per-sample noise seeds of G_B
    noise_src: list[int]                  # of G_A (= noise_trg unless quirks are official)
    domains: torch.Tensor                 # (B,) indices into the training list
    mixing: torch.Tensor | None           # (B, B) convex-hull weights (rows ~ Dirichlet(2/B))
    inputs: torch.Tensor                  # (B, E_map) hypernetwork inputs
    crop_trg: tuple[int, int] | None      # (y, x) offsets of the square crops
    crop_src: tuple[int, int] | None
    pair_ids: list[Any] | None            # tt_direction mask ids (None: no masking)
    text: dict[str, tuple[torch.Tensor, torch.Tensor]]  # encoder → target, source stacks (B, T, E)


class HypernetTrainerBase:
    """What the text and image HyperDomainNet trainers share: the network (DDP under torchrun),
    Adam, the seeded plan RNG, rendering of the local slice, the optimisation step, checkpoint
    state, previews and the result file. Subclasses set ``input_kind`` and ``preview_labels``/
    ``preview_inputs`` and implement ``train_step`` and ``domain_metadata``."""

    input_kind = "text"

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None) -> None:
        self.config = config
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        self.local = self.dist.local_slice(config.batch)
        if config.batch // self.dist.world_size < 2:
            raise HDNError(f"batch {config.batch} leaves fewer than 2 samples per process "
                           f"({self.dist.world_size} processes); use --batch {2 * self.dist.world_size} or more")
        self.G = prepare_generator(G.to(self.device) if G is not None else load_generator(config.generator, self.device),
                                   self.device, config.channels_last, config.compile, config.low_memory)
        self.clip = prepare_clip(clip if clip is not None else ClipEnsemble.from_spec(config.clip, device=self.device))
        self.mapper_encoder = self.encoder(config.mapper_clip)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.hypernet = HyperDomainNet(self.G.domain_layout, embed_dim=self.mapper_encoder.embed_dim,
                                           width=config.width, depth=config.depth,
                                           head_depth=config.head_depth).to(self.device)
        self.net = data_parallel(self.hypernet, self.dist)
        self.optimizer = torch.optim.Adam(self.hypernet.parameters(), lr=config.lr, betas=config.betas,
                                          weight_decay=config.weight_decay)
        self.scaler = loss_scaler(self.device, config.precision)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.result_name = RESULT_NAME
        self.preview_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, config.grid_truncation,
                                        self.device)
        self.preview_labels: list[str] = []
        self.preview_inputs = torch.empty(0, self.hypernet.embed_dim, device=self.device)

    def encoder(self, spec: str) -> ClipEncoder:
        """The ensemble's encoder of that spec, or a newly loaded one."""
        try:
            return self.clip[spec]
        except KeyError:
            return load_clip(spec, self.device)

    # ----- one step ------------------------------------------------------------------------------
    def draw(self, high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=self.rng)

    def draw_latents(self) -> tuple[torch.Tensor, list[int], list[int]]:
        """Global W+ codes and per-sample noise seeds for G_B and G_A."""
        batch = self.config.batch
        ws = sample_ws(self.G, batch, self.config.mixing, self.rng, self.device)
        trg = self.draw(SEED_RANGE, batch).tolist()
        src = self.draw(SEED_RANGE, batch).tolist() if self.config.quirks == "official" else trg
        return ws, trg, src

    def noise(self, seeds: list[int]) -> list[torch.Tensor | None]:
        """Noise maps for these samples: seeded per sample, or the config's constant / no noise."""
        if self.config.noise_mode != "random":
            return self.G.make_noise(self.config.noise_mode, len(seeds), self.device)
        return seeded_noise(self.G, seeds, self.device)

    def render(self, ws: torch.Tensor, noise_src: list[int], noise_trg: list[int],
               inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's G_A(w) (no grad), G_B(w; δ) and δ (B_local, D) for its slice of the batch."""
        ws, inputs = ws[self.local], inputs[self.local]
        cache = self.G.style_cache(ws)  # styles and demodulation shared by G_A and G_B
        with torch.no_grad():
            src = self.G.synthesis(ws, noise=self.noise(noise_src[self.local]), cache=cache)
        delta = self.net(inputs)
        trg = self.G.synthesis(ws, domain=delta, noise=self.noise(noise_trg[self.local]), cache=cache,
                               checkpoint=self.config.low_memory)
        return src, trg, delta

    def regularizers(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """offsets_l2 / offsets_l1 of the global batch's domain vectors (per layer, as the official)."""
        wanted = [k for k in ("offsets_l2", "offsets_l1") if self.config.losses.get(k)]
        if not wanted:
            return {}
        layers = self.G.split_domain(all_gather(delta))
        return {k: (offsets_l2 if k == "offsets_l2" else offsets_l1)(layers) for k in wanted}

    def optimise(self, terms: dict[str, torch.Tensor], local_terms: Sequence[str] = ()) -> dict[str, float]:
        """Σ coefficient × term, finiteness check (the same on every rank), Adam step.

        ``local_terms`` are means over this rank's samples; they are reported as the mean over ranks.
        """
        losses = self.config.losses
        total = sum(losses[name] * value for name, value in terms.items())
        values = {k: float(v.detach()) for k, v in terms.items()}
        values.update(mean_over_ranks({k: values[k] for k in local_terms}))
        report = {"total": sum(losses[k] * v for k, v in values.items()), **values}
        if not math.isfinite(report["total"]):
            raise NonFiniteLoss(report)
        optimizer_step(self.optimizer, total, self.scaler)
        return report

    # ----- previews, state, result ---------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: the source, then one row per preview domain (``preview_labels``) on fixed seeds."""
        n = self.preview_ws.shape[0]
        rows = [self.G.synthesis(self.preview_ws)]
        if len(self.preview_inputs):
            vectors = self.hypernet.domain_vectors(self.preview_inputs)
            ws = self.preview_ws.repeat(len(vectors), 1, 1)
            rows.append(self.G.synthesis(ws, domain=vectors.repeat_interleave(n, 0)))
        return torch.cat(rows).float().cpu(), n

    def state_dict(self) -> dict[str, Any]:
        return {"hypernet": self.hypernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.get_state(), "domains_sha256": self.domains_sha256(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("domains_sha256") != self.domains_sha256():
            raise HDNError("the training domains (list or reference images) changed since the run started; "
                           "restore them or start a new run in another directory")
        try:
            self.hypernet.load_state_dict(state["hypernet"])
        except (KeyError, RuntimeError) as exc:
            raise HDNError(f"the checkpoint does not fit this run's hypernetwork ({str(exc).splitlines()[0]}); "
                           "resume with the run's own config") from None
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.rng.set_state(state["rng"])

    def domain_metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    def domains_sha256(self) -> str:
        return self.domain_metadata()["domain_lists_sha256"]["train"]

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        return {"clip_model": cfg.mapper_clip, "input": self.input_kind, "generator": self.G.identity,
                "placement": "after_demod", **self.domain_metadata(), "loss_clip": self.clip.spec,
                "quirks": cfg.quirks, "preview_rows": ["source", *self.preview_labels],
                "world_size": self.dist.world_size, "steps": cfg.steps, "training": cfg.model_dump(mode="json"),
                "library_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    def save_result(self, path: Path) -> None:
        self.hypernet.save(path, self.metadata())


class TextHypernetTrainer(HypernetTrainerBase):
    """Trains a HyperDomainNet on ``config.domains`` (see the module docstring)."""

    input_kind = "text"

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None) -> None:
        if config.domains is None:
            raise HDNError("the text trainer needs a domain list; give --domains FILE or a built-in list name")
        super().__init__(config, G, clip)
        self.domains: DomainList = load_domain_list(config.domains)
        self.augmented = config.convex_hull or config.resample or config.crop < 1
        official = config.quirks == "official"
        self.normalize = not (official and self.augmented)
        self.loss_encoders = [(enc, w) for enc, w in self.clip
                              if not (official and config.resample and enc.name != config.mapper_clip)]
        if not self.loss_encoders:
            raise HDNError(f"with quirks=official and resampling, only the mapper's encoder {config.mapper_clip} "
                           "computes CLIP losses; include it in --clip")
        self.inputs = prompt_embeddings(self.mapper_encoder, self.domains.targets).to(self.device)
        sources = self.domains.sources
        self.source_index = torch.tensor([sources.index(p.source) for p in self.domains.pairs])
        self.text = {enc.name: (self.stack(enc, self.domains.targets), self.stack(enc, sources))
                     for enc, _ in self.loss_encoders}
        self.crop_side = int(self.G.size * config.crop)
        self.set_preview_prompts()

    def stack(self, encoder: ClipEncoder, prompts: Sequence[str]) -> torch.Tensor:
        """(N, T, E) template embeddings of each prompt."""
        return torch.stack([encoder.template_embeddings(p) for p in prompts]).to(self.device)

    def set_preview_prompts(self) -> None:
        """The first ``preview_seen`` training targets and ``preview_unseen`` test targets not trained on."""
        cfg = self.config
        seen = self.domains.targets[:cfg.preview_seen]
        unseen: list[str] = []
        if cfg.preview_unseen:
            trained = {t.lower() for t in self.domains.targets}
            unseen = [t for t in load_domain_list(cfg.test_domains).targets if t.lower() not in trained]
        self.preview_labels = seen + unseen[:cfg.preview_unseen]
        if self.preview_labels:
            self.preview_inputs = prompt_embeddings(self.mapper_encoder, self.preview_labels).to(self.device)

    def plan(self) -> BatchPlan:
        """Draw the step's global batch plan (module docstring, steps 1–3 and 5)."""
        cfg = self.config
        ws, noise_trg, noise_src = self.draw_latents()
        domains = self.draw(len(self.domains), cfg.batch)
        mixing = dirichlet_mixing_matrix(cfg.batch, generator=self.rng, device=self.device) if cfg.convex_hull else None
        d = domains.to(self.device)
        inputs = self.inputs[d]
        if mixing is not None:
            (inputs,) = convex_mix(mixing, inputs)
        text = {}
        for enc, _ in self.loss_encoders:
            targets, sources = self.text[enc.name]
            trg, src = targets[d], sources[self.source_index[domains].to(self.device)]
            if mixing is not None:
                trg, src = convex_mix(mixing, trg, src)
            if cfg.resample:
                trg = resample_embeddings(trg, cfg.resample_cos, 1.0, generator=self.rng)
            text[enc.name] = (trg, src)
        crop_trg = crop_src = None
        if cfg.crop < 1:
            crop_trg = tuple(self.draw(self.G.size - self.crop_side + 1, 2).tolist())
            crop_src = tuple(self.draw(self.G.size - self.crop_side + 1, 2).tolist()) if cfg.quirks == "official" \
                else crop_trg
        ids = None if cfg.quirks == "official" else mixture_ids(domains, mixing)
        return BatchPlan(ws, noise_trg, noise_src, domains, mixing, inputs, crop_trg, crop_src, ids, text)

    def losses(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        """The weighted loss terms of a plan (module docstring, steps 4 and 6), over the global batch."""
        cfg = self.config
        src, trg, delta = self.render(plan.ws, plan.noise_src, plan.noise_trg, plan.inputs)
        wanted = [k for k in ("direction", "global", "tt_direction") if cfg.losses.get(k)]
        terms: dict[str, torch.Tensor] = {}
        for enc, weight in self.loss_encoders:
            with torch.no_grad():
                a = all_gather(enc.encode_images(square_crop(src, plan.crop_src, self.crop_side), self.normalize))
            b = all_gather(enc.encode_images(square_crop(trg, plan.crop_trg, self.crop_side), self.normalize))
            t_trg, t_src = plan.text[enc.name]
            values = {"direction": lambda: direction_loss(b, a, t_trg, t_src),
                      "global": lambda: global_loss(b, t_trg),
                      "tt_direction": lambda: tt_direction_loss(b, t_trg, plan.pair_ids)}
            for name in wanted:
                terms[name] = terms.get(name, 0) + weight * values[name]()
        terms.update(self.regularizers(delta))
        return terms

    def train_step(self, step: int) -> dict[str, float]:
        self.hypernet.train()
        plan = self.plan()
        with autocast(self.device, self.config.precision):
            terms = self.losses(plan)
        return self.optimise(terms)

    def domain_metadata(self) -> dict[str, Any]:
        return {"domain_lists_sha256": {"train": self.domains.sha256},
                "domain_list": {"name": self.domains.name, "count": len(self.domains)}}
