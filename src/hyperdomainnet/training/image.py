"""One-shot image-driven adaptation: MindTheGap losses on domain modulation (official ``im2im_single``),
to one reference image or to several in one run (the stacked step of ``multi_target``: target k's
terms on its own rows and its own reference; results ``targets/<slug>/domain.safetensors``, slug:
the image's file stem, each with the metadata and reference latent of the equivalent single run).

Setup: each reference image I_ref (fitted to G.size) is inverted once by II2S into w_ref (cached
by image hash); per CLIP encoder E the constants r = E(I_ref) and r_A = E(G_A(w_ref)).
Each step: B W+ codes w (style mixing with probability ``mixing``) and one set of noise maps;
G_A(w) without gradients; G_B(w) and G_B(w_ref) with them; a = E(G_A(w)), b = E(G_B(w)),
r_B = E(G_B(w_ref)); with encoder weights λ_E and N encoders:

    direction   = Σ_E λ_E mean_i [1 − cos(b_i − a_i, r − r_A)]
    clip_within = Σ_E λ_E mean_i [1 − cos(b_i − r, a_i − r_A)]
    clip_ref    = (1/N) Σ_E λ_E [1 − cos(r_B, r)]        (averaged over encoders, as the official loss)
    global      = Σ_E λ_E mean_i [1 − cos(b_i, r)];  indomain as in text adaptation
    l2_rec      = MSE(↓G_B(w_ref), ↓I_ref);  lpips_rec = LPIPS-VGG(↓G_B(w_ref), ↓I_ref)

where ↓ is the antialiased bicubic resize to min(G.size, 256) px (the official BicubicDownSample(4)
at 1024 px). Total = Σ coefficient × term (+ offsets_l2/l1); Adam on the parameterisation only.

Unlike the research code, G_A(w) and G_B(w) share the crossover index and noise maps, w_ref is
rendered with constant noise (as it was inverted), and the reference's ↓ uses the same resize as
the render's (the official dataset used PIL Lanczos). With ``quirks="official"`` each render
draws its own crossover index and noise, as the research generator does on every call: G_A(w_ref)
once at setup (seeded by ``seed``), G_A(w), G_B(w) and G_B(w_ref) every step.
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
from ..losses import clip_ref_loss, clip_within_loss, direction_loss, global_loss, indomain_angle_loss, l2_rec_loss
from ..perceptual import load_lpips
from ..stylegan2.generator import Generator
from ..stylize import (MIX_TRUNCATION, InversionOptions, Inverted, invert_photo, save_domain_with_reference,
                       style_mix)
from .config import ImageAdaptConfig
from .multi_target import MultiTargetTrainer, target_slugs
from .sampling import PREVIEW_SEED, fixed_latents, sample_noise
from .steps import run_metadata

RECONSTRUCTION_TERMS = ("l2_rec", "lpips_rec")
REFERENCE_TERMS = ("clip_ref", *RECONSTRUCTION_TERMS)  # need G_B(w_ref)


def inversion_options(config: ImageAdaptConfig) -> InversionOptions:
    """The reference image's II2S settings from a run configuration."""
    return InversionOptions(steps=config.invert_steps, lambda_p=config.lambda_p, fit=config.fit,
                            align=config.align, lpips_random_backbone=config.lpips_random_backbone,
                            pnorm_samples=config.pnorm_samples)


@torch.no_grad()
def reference_embeddings(G: Generator, clip: ClipEnsemble, image: torch.Tensor, latent: torch.Tensor,
                         noise: list[torch.Tensor | None] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per encoder E (by name): r = E(I_ref) and r_A = E(G_A(w_ref)), w_ref rendered with ``noise``
    (default: constant noise, as it was inverted)."""
    inverted_a = G.synthesis(latent, noise=noise)
    return {enc.name: (enc.encode_images(image), enc.encode_images(inverted_a)) for enc, _ in clip}


def clip_term_values(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, r_a: torch.Tensor,
                     encode_ref_trg: Callable[[], torch.Tensor], encoders: int) -> dict[str, Callable[[], torch.Tensor]]:
    """One encoder's CLIP terms (module docstring), each computed when called: a = E(G_A(w)),
    b = E(G_B(w)), the reference constants r, r_A, ``encode_ref_trg()`` = E(G_B(w_ref)); clip_ref
    is divided by the number of ``encoders`` (averaged over the ensemble)."""
    return {"direction": lambda: direction_loss(b, a, r, r_a),
            "clip_within": lambda: clip_within_loss(b, a, r, r_a),
            "global": lambda: global_loss(b, r),
            "indomain": lambda: indomain_angle_loss(b, a),
            "clip_ref": lambda: clip_ref_loss(encode_ref_trg(), r) / encoders}


def reconstruction_terms(ref_trg: torch.Tensor, reference_small: torch.Tensor, lpips: torch.nn.Module,
                         wanted: list[str]) -> dict[str, torch.Tensor]:
    """The ``wanted`` ones of l2_rec and lpips_rec: ↓G_B(w_ref) against ↓I_ref (``reference_small``)."""
    pred = downsample(ref_trg, reference_small.shape[-1])
    values = {"l2_rec": lambda: l2_rec_loss(pred, reference_small),
              "lpips_rec": lambda: lpips(pred, reference_small).mean()}
    return {name: values[name]() for name in wanted if name in values}


def reference_metadata(config: ImageAdaptConfig, clip_spec: str, reference: Inverted) -> dict[str, Any]:
    """The result metadata of an image run on ``reference`` (file name, sha256, fit, alignment)."""
    about = {"file": reference.name, "sha256": reference.sha256, "fit": config.fit, "aligned": config.align}
    return run_metadata(config, clip_spec, "image", reference=about, parameterization=config.parameterization)


def check_reference_unchanged(stored_sha256: str, reference: Inverted, path: str) -> None:
    """Raise a one-line ``ConfigError`` when a resumed run's reference image is not the one it started with."""
    if stored_sha256 != reference.sha256:
        raise ConfigError(f"the reference image {path} changed since the run started; "
                          "restore it or start a new run in another directory")


def image_slugs(paths: list[str]) -> list[str]:
    """Directory names for the reference images: their file stems as ``target_slugs`` spells them."""
    return target_slugs([Path(path).stem for path in paths])


class ImageTrainer(MultiTargetTrainer):
    """Adapts a generator to the domain of every image of ``config.reference_images()`` (the single
    ``image``, or each of ``images``)."""

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
        self.mix_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, MIX_TRUNCATION, self.device)
        self.ref_noise: list[torch.Tensor | None] | None = None

    @property
    def reference(self) -> Inverted:
        """The (first) reference image, inverted."""
        return self.references[0]

    @property
    def reference_small(self) -> torch.Tensor:
        return self.references_small[0]

    @property
    def reference_latent(self) -> torch.Tensor:
        """The (first) reference's latent w_ref (1, n_latent, D)."""
        return self.reference_latents[:1]

    @torch.no_grad()
    def _set_reference_latents(self, latents: torch.Tensor) -> None:
        """w_ref_k (K, n_latent, D) and per target the constants r_k = E(I_k), r_A_k = E(G_A(w_ref_k))
        (each reference rendered alone, as its single run renders it; with official quirks with
        noise drawn once, seeded by ``seed``)."""
        self.reference_latents = latents.to(self.device)
        noise = (sample_noise(self.G, "random", 1, torch.Generator().manual_seed(self.config.seed), self.device)
                 if self.official else None)
        self.reference_embeddings = [reference_embeddings(self.G, self.clip, ref.image,
                                                          self.reference_latents[k:k + 1], noise)
                                     for k, ref in enumerate(self.references)]

    def sample(self) -> tuple[list[torch.Tensor], list[list[torch.Tensor | None]]]:
        """The step's codes and noise; with official quirks, then the noise of G_B(w_ref)."""
        drawn = super().sample()
        self.ref_noise = sample_noise(self.G, "random", 1, self.rng, self.device) if self.official else None
        return drawn

    def reference_renders(self, targets: range) -> torch.Tensor:
        """G_B_k(w_ref_k) of every target k in ``targets``: one batch, δ_k each, constant noise (as
        inverted; under official quirks the step's own noise)."""
        cache = self.G.style_cache(self.reference_latents)
        noise = self.ref_noise if self.ref_noise is not None else self.const_noise
        return self._adapted(cache, noise, slice(targets.start, targets.stop), 1, self.config.low_memory)

    def target_terms(self, src: torch.Tensor, trg: torch.Tensor, targets: range) -> dict[str, torch.Tensor]:
        """Target k's CLIP terms on its rows and reconstruction terms on its reference (module docstring)."""
        ref_trg = self.reference_renders(targets) if self.wanted(REFERENCE_TERMS) else None

        def values(encoder: ClipEncoder, k: int, a: torch.Tensor,
                   b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            r, r_a = self.reference_embeddings[k][encoder.name]
            i = k - targets.start  # clip_ref, the only term calling it, is one of the REFERENCE_TERMS: ref_trg is rendered.
            return clip_term_values(a, b, r, r_a, lambda: encoder.encode_images(ref_trg[i:i + 1]), len(self.clip))

        terms = self.per_target_clip_terms(src, trg, targets, values)
        if ref_trg is not None:
            for i, k in enumerate(targets):
                rec = reconstruction_terms(ref_trg[i:i + 1], self.references_small[k], self.lpips,
                                           self.wanted(RECONSTRUCTION_TERMS))
                terms.update({self.key(k, name): value for name, value in rec.items()})
        return terms

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions): the source, each reference's adapted
        row, then each reference's row with its fine W+ layers."""
        names = [Path(path).name for path in self.paths]
        return ["source", *names, *(f"{name} + reference style" for name in names)]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: source, one adapted row per target, then per target the adapted ψ = 0.5 samples with
        the reference's fine layers (MindTheGap)."""
        images, n = super().preview()
        mixed = [param.synthesize(self.G, style_mix(self.mix_ws, self.reference_latents[k:k + 1]))
                 for k, param in enumerate(self.params)]
        return torch.cat([images, *(m.float().cpu() for m in mixed)]), n

    def state_dict(self) -> dict[str, Any]:
        references = ({"reference_sha256s": [ref.sha256 for ref in self.references],
                       "reference_latents": self.reference_latents.cpu()} if self.several else
                      {"reference_sha256": self.reference.sha256, "reference_latent": self.reference_latent.cpu()})
        return {**super().state_dict(), **references}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state["reference_sha256s"] if self.several else [state["reference_sha256"]]
        if len(stored) != self.k:
            raise ConfigError(f"the checkpoint holds {len(stored)} reference images, this run {self.k}; "
                              "resume with the run's own config")
        for sha256, reference, path in zip(stored, self.references, self.paths):
            check_reference_unchanged(sha256, reference, path)
        super().load_state_dict(state)
        self._set_reference_latents(state["reference_latents"] if self.several else state["reference_latent"])

    def single_config(self, k: int) -> ImageAdaptConfig:
        """The configuration of the single-image run equivalent to target ``k``."""
        return self.config.model_copy(update={"image": self.paths[k], "images": []})

    def target_metadata(self, k: int) -> dict[str, Any]:
        return reference_metadata(self.single_config(k), self.clip.spec, self.references[k])

    def save_target(self, k: int, path: Path) -> None:
        """Target k's domain file with its reference latent."""
        save_domain_with_reference(path, self.domain(k), self.reference_latents[k:k + 1])
