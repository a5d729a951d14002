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
``quirks="official"``: tt_direction keeps same-reference pairs, and G_A and G_B get independent
noise. As the single-image trainer, w_ref is rendered with constant noise (as it was inverted).
"""
from __future__ import annotations

from typing import Any

import torch

from ..clip import ClipEnsemble
from ..errors import HDNError
from ..hypernet.domains import list_sha256, load_image_list
from ..images import image_sha256, load_image
from ..inversion import LPIPS_SIZE, downsample
from ..losses import clip_ref_loss, clip_within_loss, direction_loss, l2_rec_loss, tt_direction_loss
from ..perceptual import load_lpips
from ..stylegan2.generator import Generator
from ..stylize import InversionOptions, invert_photo
from .config import HypernetConfig
from .distributed import all_gather, broadcast_tensor
from .multi_text import HypernetTrainerBase
from .runtime import autocast

CLIP_TERMS = ("direction", "clip_within", "clip_ref", "tt_direction")
LOCAL_TERMS = ("l2_rec", "lpips_rec")


class ImageHypernetTrainer(HypernetTrainerBase):
    """Trains a HyperDomainNet on the reference images listed in ``config.images``."""

    input_kind = "image"

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None,
                 progress: bool = True) -> None:
        if config.images is None:
            raise HDNError("the image trainer needs reference images; give --images LIST.txt")
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
            inverted = self.G.synthesis(self.latents)
            self.references = {enc.name: (enc.encode_images(self.images), enc.encode_images(inverted))
                               for enc, _ in self.clip}
        self.preview_labels = [p.name for p in self.paths[:config.preview_seen]]
        self.preview_inputs = self.inputs[:config.preview_seen]

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

    def losses(self, ws: torch.Tensor, noise_src: list[int], noise_trg: list[int],
               refs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss terms (module docstring) for references ``refs`` (B,) of the global batch."""
        cfg = self.config
        wanted = [k for k in CLIP_TERMS if cfg.losses.get(k)]
        src, trg, delta = self.render(ws, noise_src, noise_trg, self.inputs[refs])
        local_refs = refs[self.local]
        need_ref = any(cfg.losses.get(k) for k in ("clip_ref", *LOCAL_TERMS))
        ref_trg = (self.G.synthesis(self.latents[local_refs], domain=delta, checkpoint=cfg.low_memory)
                   if need_ref else None)
        ids = None if cfg.quirks == "official" else refs.tolist()
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
        ws, noise_trg, noise_src = self.draw_latents()
        refs = self.draw(len(self.paths), self.config.batch).to(self.device)
        with autocast(self.device, self.config.precision):
            terms = self.losses(ws, noise_src, noise_trg, refs)
        return self.optimise(terms, local_terms=[k for k in LOCAL_TERMS if k in terms])

    def domain_metadata(self) -> dict[str, Any]:
        return {"domain_lists_sha256": {"train": list_sha256(self.sha256)},
                "references": [{"file": p.name, "sha256": s} for p, s in zip(self.paths, self.sha256)]}
