"""HyperDomainNet training on reference images (official ``im2im_multiple_base``).

Setup: each reference I_n (fitted to G.size) is inverted once by II2S into w_n (cached by image
hash; under torchrun the references are split over the ranks and the latents broadcast); the
mapper input m_n = E_map(I_n), normalised; per loss encoder E the constants r_n = E(I_n) and
r_A,n = E(G_A(w_n)).

Each step, for the global batch (plan drawn identically on every rank, each renders its slice):
W+ codes w_i (style mixing), per-sample noise seeds, references d_i uniform with replacement;
δ_i = HyperDomainNet(m_{d_i}); G_A(w_i) without and G_B(w_i; δ_i), G_B(w_{d_i}; δ_i) with
gradients; a, b, b_ref = E(G_A(w)), E(G_B(w)), E(G_B(w_ref)), normalised. With encoder weights
λ_E over N encoders (r, r_A indexed by d_i):

    direction    = Σ_E λ_E mean_i [1 − cos(b_i − a_i, r_i − r_A,i)]
    clip_within  = Σ_E λ_E mean_i [1 − cos(b_i − r_i, a_i − r_A,i)]
    clip_ref     = (1/N) Σ_E λ_E mean_i [1 − cos(b_ref,i, r_i)]   (averaged over encoders, as the official)
    tt_direction = Σ_E λ_E mean_{i<j, d_i≠d_j} [1 − cos(b_i − b_j, r_i − r_j)]
    l2_rec       = mean_i MSE(↓G_B(w_{d_i}; δ_i), ↓I_{d_i});  lpips_rec = mean_i LPIPS-VGG(same pair)
    offsets_l2   = Σ_l mean(δ_l²)

(↓: antialiased bicubic to min(G.size, 256) px, the official BicubicDownSample(4) at 1024 px.)
G_A(w_n) and G_B(w_{d_i}; δ_i) use the generator's constant noise (w_n was inverted with it).

``quirks="official"`` reproduces the released trainer: tt_direction keeps same-reference pairs;
G_A and G_B get their own crossover index and noise; G_A(w_n) is rendered once with random noise
and G_B's reference render with fresh random noise each step; and that render's latent is
``research_remap(w_{d_i})``: the research trainer forgets to flag the inverted W+ as a latent, so
its generator passes it through the mapping network again.

Preview grids, as the research trainer logs them: the source row, one row per preview reference's
predicted domain, then per preview reference that domain on ψ = 0.5 samples whose W+ layers ≥ 7
are the reference's w_n (how released image domains render).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..clip import ClipEnsemble
from ..errors import ConfigError
from ..hypernet.domains import list_sha256, load_image_list
from ..images import image_sha256, load_image
from ..inversion import LPIPS_SIZE, downsample
from ..losses import clip_ref_loss, clip_within_loss, direction_loss, l2_rec_loss, tt_direction_loss
from ..perceptual import load_lpips
from ..stylegan2.generator import Generator
from ..stylize import MIX_TRUNCATION, InversionOptions, invert_photo, style_mix
from .config import HypernetConfig
from .distributed import all_gather, broadcast_tensor
from .hypernet_base import SEED_RANGE, HypernetTrainerBase, seeded_noise
from .sampling import PREVIEW_SEED, fixed_latents, sample_noise

CLIP_TERMS = ("direction", "clip_within", "clip_ref", "tt_direction")
LOCAL_TERMS = ("l2_rec", "lpips_rec")


def research_remap(G: Generator, latents: torch.Tensor) -> torch.Tensor:
    """W+ (B, L, D) → the mapping network applied to it again, as the research generator does:
    PixelNorm over dim 1 (the layer axis of a W+ code), then each mapping layer
    y = lrelu_0.2(x·(W·c)ᵀ + b·lr_mul)·√2 with its bias on the feature axis (the research code's
    non-compiled fused op; its compiled CUDA op would index the bias by row instead)."""
    x = latents * torch.rsqrt(latents.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    for layer in list(G.style)[1:]:
        x = F.leaky_relu(F.linear(x, layer.weight * layer.scale) + layer.bias * layer.lr_mul, 0.2) * math.sqrt(2)
    return x


class ImageHypernetTrainer(HypernetTrainerBase):
    """Trains a HyperDomainNet on the reference images listed in ``config.images``."""

    input_kind = "image"

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None,
                 progress: bool = True) -> None:
        if config.images is None:
            raise ConfigError("the image trainer needs reference images; give --images LIST.txt")
        super().__init__(config, G, clip)
        self.paths = load_image_list(config.images)
        self.lpips = load_lpips("vgg", self.device, config.lpips_random_backbone) \
            if config.losses.get("lpips_rec") else None
        self.images = torch.cat([load_image(p, self.G.size, config.fit) for p in self.paths]).to(self.device)
        self.images_small = downsample(self.images, min(self.G.size, LPIPS_SIZE))
        self.sha256 = [image_sha256(p) for p in self.paths]
        self.latents = self.invert_references(progress)
        with torch.no_grad():
            self.inputs = self.mapper_encoder.encode_images(self.images).float()
            noise = (sample_noise(self.G, "random", len(self.paths), torch.Generator().manual_seed(config.seed),
                                  self.device) if self.official else None)
            inverted = self.G.synthesis(self.latents, noise=noise)
            self.references = {enc.name: (enc.encode_images(self.images), enc.encode_images(inverted))
                               for enc, _ in self.clip}
        self.preview_labels = [p.name for p in self.paths[:config.preview_seen]]
        self.preview_inputs = self.inputs[:config.preview_seen]
        self.mix_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, MIX_TRUNCATION, self.device)

    def invert_references(self, progress: bool) -> torch.Tensor:
        """(N, n_latent, style_dim) II2S latents; reference n is inverted by rank n mod world size
        (through the latent cache) and broadcast, so every rank holds the same latents."""
        cfg = self.config
        options = InversionOptions(steps=cfg.invert_steps, lambda_p=cfg.lambda_p, fit=cfg.fit,
                                   lpips_random_backbone=cfg.lpips_random_backbone, pnorm_samples=cfg.pnorm_samples)
        latents = []
        for n, path in enumerate(self.paths):
            owner = n % self.dist.world_size
            if owner == self.dist.rank:
                latent = invert_photo(self.G, path, options, progress and self.dist.is_main).latent
            else:
                latent = torch.empty(1, self.G.n_latent, self.G.style_dim, device=self.device)
            latents.append(broadcast_tensor(latent.contiguous(), owner))
        return torch.cat(latents)

    def render_references(self, refs: torch.Tensor, delta: torch.Tensor,
                          seeds: list[int] | None) -> torch.Tensor:
        """G_B(w_{d_i}; δ_i) for this rank's samples: constant noise, or under official quirks
        the remapped latents with noise seeded per sample by ``seeds``."""
        latents = self.latents[refs[self.local]]
        noise = None
        if self.official:
            latents = research_remap(self.G, latents)
            noise = seeded_noise(self.G, seeds[self.local], self.device)
        return self.output.synthesize_per_sample(self.G, latents, delta, noise=noise, checkpoint=self.config.low_memory)

    def losses(self, ws_src: torch.Tensor, ws: torch.Tensor, noise_src: list[int], noise_trg: list[int],
               refs: torch.Tensor, ref_seeds: list[int] | None = None) -> dict[str, torch.Tensor]:
        """The weighted loss terms (module docstring) for references ``refs`` (B,) of the global
        batch; ``ref_seeds``: per-sample noise seeds of the reference renders (official quirks)."""
        cfg = self.config
        wanted = [k for k in CLIP_TERMS if cfg.losses.get(k)]
        src, trg, delta = self.render(ws_src, ws, noise_src, noise_trg, self.inputs[refs])
        local_refs = refs[self.local]
        need_ref = any(cfg.losses.get(k) for k in ("clip_ref", *LOCAL_TERMS))
        ref_trg = self.render_references(refs, delta, ref_seeds) if need_ref else None
        ids = None if self.official else refs.tolist()
        terms: dict[str, torch.Tensor] = {}
        for enc, weight in self.clip:
            with torch.no_grad():
                a = all_gather(enc.encode_images(src))
            b = all_gather(enc.encode_images(trg))
            r, r_a = (t[refs] for t in self.references[enc.name])
            values = {"direction": lambda: direction_loss(b, a, r, r_a),
                      "clip_within": lambda: clip_within_loss(b, a, r, r_a),
                      "clip_ref": lambda: clip_ref_loss(all_gather(enc.encode_images(ref_trg)), r) / len(self.clip),
                      "tt_direction": lambda: tt_direction_loss(b, r, ids)}
            for name in wanted:
                terms[name] = terms.get(name, 0) + weight * values[name]()
        if ref_trg is not None:
            pred = downsample(ref_trg, self.images_small.shape[-1])
            target = self.images_small[local_refs]
            if cfg.losses.get("l2_rec"):
                terms["l2_rec"] = l2_rec_loss(pred, target)
            if self.lpips is not None:
                terms["lpips_rec"] = self.lpips(pred, target).mean()
        terms.update(self.regularizers(delta))
        return terms

    def train_step(self, step: int) -> dict[str, float]:
        self.hypernet.train()
        ws_src, ws, noise_src, noise_trg = self.draw_latents()
        refs = self.draw(len(self.paths), self.config.batch).to(self.device)
        ref_seeds = self.draw(SEED_RANGE, self.config.batch).tolist() if self.official else None
        with self.autocast():
            terms = self.losses(ws_src, ws, noise_src, noise_trg, refs, ref_seeds)
        return self.update_across_ranks(terms, local_terms=[k for k in LOCAL_TERMS if k in terms])

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions): the source, each preview reference's
        domain, then each one with the reference's style."""
        return [*super().preview_rows, *(f"{name} + reference style" for name in self.preview_labels)]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """The base rows, then per preview reference n its predicted domain δ_n on the ψ = 0.5 samples
        with W+ layers ≥ 7 from w_n (module docstring)."""
        images, n = super().preview()
        if not len(self.preview_inputs):
            return images, n
        vectors = self.hypernet.domain_vectors(self.preview_inputs)
        ws = torch.cat([style_mix(self.mix_ws, self.latents[k:k + 1]) for k in range(len(vectors))])
        mixed = self.output.synthesize_per_sample(self.G, ws, vectors.repeat_interleave(n, 0))
        return torch.cat([images, mixed.float().cpu()]), n

    def domain_metadata(self) -> dict[str, Any]:
        return {"domain_lists_sha256": {"train": list_sha256(self.sha256)},
                "references": [{"file": p.name, "sha256": s} for p, s in zip(self.paths, self.sha256)]}
