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
   G_B(w_i; δ_i) with gradients, sharing codes and noise;
5. ``crop`` < 1: one random square crop of side s = ⌊crop·size⌋ at offsets in [0, size − s]
   for the batch, the same for both;
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
same-mixture pairs (each adds a constant 1, diluting the gradient); G_A and G_B get their own
crossover index, noise and crop, the crop offsets in [0, ⌊size·(1 − crop)⌋) (the research code
hard-codes size 1024: offsets in [0, 204), side 819; here the size is the generator's).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..clip import ClipEncoder, ClipEnsemble
from ..errors import ConfigError
from ..hypernet.domains import DomainList, load_domain_list
from ..hypernet.model import prompt_embeddings
from ..hypernet.samplers import convex_mix, dirichlet_mixing_matrix, resample_embeddings
from ..losses import direction_loss, global_loss, tt_direction_loss
from ..stylegan2.generator import Generator
from .config import HypernetConfig
from .distributed import all_gather
from .hypernet_base import HypernetTrainerBase


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

    ws_src: torch.Tensor                  # (B, n_latent, style_dim) W+ codes of G_A
    ws: torch.Tensor                      # of G_B (the same tensor unless quirks are official)
    noise_trg: list[int]                  # per-sample noise seeds of G_B
    noise_src: list[int]                  # of G_A (= noise_trg unless quirks are official)
    domains: torch.Tensor                 # (B,) indices into the training list
    mixing: torch.Tensor | None           # (B, B) convex-hull weights (rows ~ Dirichlet(2/B))
    inputs: torch.Tensor                  # (B, E_map) hypernetwork inputs
    crop_trg: tuple[int, int] | None      # (y, x) offsets of the square crops
    crop_src: tuple[int, int] | None
    pair_ids: list[Any] | None            # tt_direction mask ids (None: no masking)
    text: dict[str, tuple[torch.Tensor, torch.Tensor]]  # encoder → target, source stacks (B, T, E)


class TextHypernetTrainer(HypernetTrainerBase):
    """Trains a HyperDomainNet on ``config.domains`` (see the module docstring)."""

    input_kind = "text"

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None) -> None:
        if config.domains is None:
            raise ConfigError("the text trainer needs a domain list; give --domains FILE or a built-in list name")
        super().__init__(config, G, clip)
        self.domains: DomainList = load_domain_list(config.domains)
        self.augmented = config.convex_hull or config.resample or config.crop < 1
        self.normalize = not (self.official and self.augmented)
        self.loss_encoders = [(enc, w) for enc, w in self.clip
                              if not (self.official and config.resample and enc.name != config.mapper_clip)]
        if not self.loss_encoders:
            raise ConfigError(f"with quirks=official and resampling, only the mapper's encoder {config.mapper_clip} "
                              "computes CLIP losses; include it in --clip")
        self.inputs = prompt_embeddings(self.mapper_encoder, self.domains.targets).to(self.device)
        sources = self.domains.sources
        self.source_index = torch.tensor([sources.index(p.source) for p in self.domains.pairs])
        self.text = {enc.name: (self.stack(enc, self.domains.targets), self.stack(enc, sources))
                     for enc, _ in self.loss_encoders}
        self.crop_side = int(self.G.size * config.crop)
        self.crop_offsets = int(self.G.size * (1 - config.crop)) if self.official else self.G.size - self.crop_side + 1
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
        ws_src, ws, noise_src, noise_trg = self.draw_latents()
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
            crop_trg = tuple(self.draw(self.crop_offsets, 2).tolist())
            crop_src = tuple(self.draw(self.crop_offsets, 2).tolist()) if self.official else crop_trg
        ids = None if self.official else mixture_ids(domains, mixing)
        return BatchPlan(ws_src, ws, noise_trg, noise_src, domains, mixing, inputs, crop_trg, crop_src, ids, text)

    def losses(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        """The weighted loss terms of a plan (module docstring, steps 4 and 6), over the global batch."""
        cfg = self.config
        src, trg, delta = self.render(plan.ws_src, plan.ws, plan.noise_src, plan.noise_trg, plan.inputs)
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
        with self.autocast():
            terms = self.losses(plan)
        return self.update_across_ranks(terms)

    def domain_metadata(self) -> dict[str, Any]:
        return {"domain_lists_sha256": {"train": self.domains.sha256},
                "domain_list": {"name": self.domains.name, "count": len(self.domains)}}
