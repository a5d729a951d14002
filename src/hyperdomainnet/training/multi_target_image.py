"""Several reference images in one run: one domain vector per image, trained on one shared batch.

The step of ``multi_target.py`` with the one-shot image losses of ``image.py``: the step's B
latents and noise are drawn once, G_A(w) is rendered once and shared, G_B renders the K·B batch
with per-sample domain vectors (rows k·B … (k+1)·B use δ_k). Per target k:

- the reference I_k is inverted once by II2S into w_ref_k (cached by image hash);
  r_k = E(I_k) and r_A_k = E(G_A(w_ref_k)) per encoder E, at setup;
- every step renders G_B_k(w_ref_k) with constant noise (the references of the targets rendered
  together in one batch, δ_k each);
- its terms are ImageTrainer's on its own rows and reference: direction, clip_within, global,
  indomain on b_k = E(G_B_k(w)); clip_ref on E(G_B_k(w_ref_k)); l2_rec, lpips_rec on ↓G_B_k(w_ref_k);
- one Adam over the stacked (K, D) vectors = K independent optimisers.

With the same seed and settings each δ_k equals the single-image run's (up to float rounding of
the larger batches). Results: ``targets/<slug>/domain.safetensors`` (slug: the image's file
stem), each with the metadata and reference latent of the equivalent single run; the checkpoint
holds every reference's sha256 and latent.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..clip import ClipEncoder, ClipEnsemble
from ..errors import ConfigError
from ..images import open_image
from ..inversion import LPIPS_SIZE, downsample
from ..perceptual import load_lpips
from ..stylegan2.generator import Generator
from ..stylize import invert_photo, save_domain_with_reference
from .config import ImageAdaptConfig
from .image import (CLIP_TERMS, RECONSTRUCTION_TERMS, REFERENCE_TERMS, check_reference_unchanged, clip_term_values,
                    inversion_options, reconstruction_terms, reference_embeddings, reference_metadata)
from .multi_target import MultiTargetTrainer, target_slugs


def image_slugs(paths: list[str]) -> list[str]:
    """Directory names for the reference images: their file stems as ``target_slugs`` spells them."""
    return target_slugs([Path(path).stem for path in paths])


class MultiTargetImageTrainer(MultiTargetTrainer):
    """Adapts one generator to the domain of every image of ``config.reference_images()`` at once
    (module docstring)."""

    config: ImageAdaptConfig

    def __init__(self, config: ImageAdaptConfig, G: Generator | None = None,
                 clip: ClipEnsemble | None = None, progress: bool = True) -> None:
        self.paths = config.reference_images()
        for path in self.paths:  # every file readable before the first (long) inversion
            open_image(path)
        options = {"placement": config.placement} if config.parameterization == "domain_vector" else {}
        super().__init__(config, image_slugs(self.paths), G, clip, options)
        self.lpips = load_lpips("vgg", self.device, config.lpips_random_backbone)
        options = inversion_options(config)
        self.references = [invert_photo(self.G, path, options, progress) for path in self.paths]
        size = min(self.G.size, LPIPS_SIZE)
        self.references_small = [downsample(ref.image, size) for ref in self.references]
        self._set_reference_latents(torch.cat([ref.latent for ref in self.references]))

    @torch.no_grad()
    def _set_reference_latents(self, latents: torch.Tensor) -> None:
        """w_ref_k (K, n_latent, D) and per target the constants r_k = E(I_k), r_A_k = E(G_A(w_ref_k))
        (each reference rendered alone, as its single run renders it)."""
        self.reference_latents = latents.to(self.device)
        self.reference_embeddings = [reference_embeddings(self.G, self.clip, ref.image, self.reference_latents[k:k + 1])
                                     for k, ref in enumerate(self.references)]

    def reference_renders(self, targets: range) -> torch.Tensor:
        """G_B_k(w_ref_k) of every target k in ``targets``: one batch, δ_k each, constant noise (as inverted)."""
        cache = self.G.style_cache(self.reference_latents)
        return self._adapted(cache, self.const_noise, slice(targets.start, targets.stop), 1, self.config.low_memory)

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """``<slug>/<term>``: target k's image terms (ImageTrainer's) on its rows and its reference."""
        ref_trg = self.reference_renders(targets) if self.wanted(REFERENCE_TERMS) else None

        def values(encoder: ClipEncoder, k: int, a: torch.Tensor,
                   b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            r, r_a = self.reference_embeddings[k][encoder.name]
            i = k - targets.start  # clip_ref, the only term calling it, is one of the REFERENCE_TERMS: ref_trg is rendered.
            return clip_term_values(a, b, r, r_a, lambda: encoder.encode_images(ref_trg[i:i + 1]), len(self.clip))

        terms = self.per_target_clip_terms(src, trg, targets, self.wanted(CLIP_TERMS), values)
        if ref_trg is not None:
            for i, k in enumerate(targets):
                rec = reconstruction_terms(ref_trg[i:i + 1], self.references_small[k], self.lpips,
                                           self.wanted(RECONSTRUCTION_TERMS))
                terms.update({self.key(k, name): value for name, value in rec.items()})
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reference_sha256s": [ref.sha256 for ref in self.references],
                "reference_latents": self.reference_latents.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state["reference_sha256s"]
        if len(stored) != self.k:
            raise ConfigError(f"the checkpoint holds {len(stored)} reference images, this run {self.k}; "
                              "resume with the run's own config")
        for sha256, reference, path in zip(stored, self.references, self.paths):
            check_reference_unchanged(sha256, reference, path)
        super().load_state_dict(state)
        self._set_reference_latents(state["reference_latents"])

    def single_config(self, k: int) -> ImageAdaptConfig:
        """The configuration of the single-image run equivalent to target ``k``."""
        return self.config.model_copy(update={"image": self.paths[k], "images": []})

    def target_metadata(self, k: int) -> dict[str, Any]:
        return reference_metadata(self.single_config(k), self.clip.spec, self.references[k])

    def save_target(self, k: int, path: Path) -> None:
        """Target k's domain file with its reference latent."""
        save_domain_with_reference(path, self.domain(k), self.reference_latents[k:k + 1])
