"""One-shot image-driven adaptation: MindTheGap losses on domain modulation (official ``im2im_single``).

Setup: the reference image I_ref (fitted to G.size) is inverted once by II2S into w_ref (cached
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
from ..domain.parameterizations import build_parameterization
from ..errors import ConfigError
from ..inversion import LPIPS_SIZE, downsample
from ..losses import clip_ref_loss, clip_within_loss, direction_loss, global_loss, indomain_angle_loss, l2_rec_loss
from ..perceptual import load_lpips
from ..stylegan2.generator import Generator
from ..stylize import (MIX_TRUNCATION, InversionOptions, Inverted, invert_photo, save_domain_with_reference,
                       style_mix)
from .config import ImageAdaptConfig
from .runtime import autocast, resolve_device
from .sampling import PREVIEW_SEED, fixed_latents, sample_noise, sample_ws_per_call
from .steps import (apply_update, ensemble_terms, load_step_state, optimisation, regularization_terms, run_metadata,
                    step_state, training_clip, training_generator)

CLIP_TERMS = ("direction", "clip_within", "global", "indomain", "clip_ref")
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


class ImageTrainer:
    """Adapts a generator to the domain of the single reference image ``config.image``."""

    def __init__(self, config: ImageAdaptConfig, G: Generator | None = None,
                 clip: ClipEnsemble | None = None, progress: bool = True) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.G = training_generator(config, G, self.device)
        self.lpips = load_lpips("vgg", self.device, config.lpips_random_backbone)
        self.reference = invert_photo(self.G, config.image, inversion_options(config), progress)
        self.reference_small = downsample(self.reference.image, min(self.G.size, LPIPS_SIZE))
        self.clip = training_clip(config, clip, self.device, prompts=())
        options = {"placement": config.placement} if config.parameterization == "domain_vector" else {}
        self.param = build_parameterization(config.parameterization, self.G, **options).to(self.device)
        self.result_name = "domain.safetensors"
        self.optimizer, self.scaler, self.rng = optimisation(self.param.parameters(), config, self.device)
        self._set_reference_latent(self.reference.latent)
        self.preview_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, config.grid_truncation,
                                        self.device)
        self.mix_ws = fixed_latents(self.G, config.grid_samples, PREVIEW_SEED, MIX_TRUNCATION, self.device)

    @torch.no_grad()
    def _set_reference_latent(self, latent: torch.Tensor) -> None:
        """w_ref and the per-encoder constants r = E(I_ref), r_A = E(G_A(w_ref))."""
        self.reference_latent = latent.to(self.device)
        noise = (sample_noise(self.G, "random", 1, torch.Generator().manual_seed(self.config.seed), self.device)
                 if self.official else None)
        self.reference_embeddings = reference_embeddings(self.G, self.clip, self.reference.image,
                                                         self.reference_latent, noise)

    @property
    def official(self) -> bool:
        return self.config.quirks == "official"

    def wanted(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if self.config.losses.get(name)]

    def clip_losses(self, src: torch.Tensor, trg: torch.Tensor,
                    ref_trg: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Weighted CLIP terms summed over the ensemble; clip_ref is averaged over it."""
        def values(enc: ClipEncoder, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
            return clip_term_values(a, b, *self.reference_embeddings[enc.name], lambda: enc.encode_images(ref_trg),
                                    len(self.clip))

        return ensemble_terms(self.clip, src, trg, self.wanted(CLIP_TERMS), values)

    def reconstruction_losses(self, ref_trg: torch.Tensor) -> dict[str, torch.Tensor]:
        """l2_rec and lpips_rec of ↓G_B(w_ref) against ↓I_ref."""
        return reconstruction_terms(ref_trg, self.reference_small, self.lpips, self.wanted(RECONSTRUCTION_TERMS))

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.config
        self.param.train()
        calls = 2 if self.official else 1
        ws = sample_ws_per_call(self.G, cfg.batch, cfg.mixing, self.rng, self.device, calls)
        noise = [sample_noise(self.G, cfg.noise_mode, cfg.batch, self.rng, self.device) for _ in range(calls)]
        ref_noise = sample_noise(self.G, "random", 1, self.rng, self.device) if self.official else None
        cache = self.G.style_cache(ws[-1])  # styles and demodulation, shared by G_A and G_B if one W+
        with autocast(self.device, cfg.precision):
            with torch.no_grad():
                src = self.G.synthesis(ws[0], noise=noise[0], cache=cache)
            trg = self.param.synthesize(self.G, ws[-1], noise=noise[-1], cache=cache, checkpoint=cfg.low_memory)
            ref_trg = (self.param.synthesize(self.G, self.reference_latent, noise=ref_noise, checkpoint=cfg.low_memory)
                       if self.wanted(REFERENCE_TERMS) else None)
            terms = self.clip_losses(src, trg, ref_trg)
            if ref_trg is not None:
                terms.update(self.reconstruction_losses(ref_trg))
        terms.update(regularization_terms(cfg.losses, self.param.regularized_tensors()))
        return apply_update(self.optimizer, cfg.losses, terms, self.scaler)

    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions)."""
        name = Path(self.config.image).name
        return ["source", name, f"{name} + reference style"]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: source, adapted, adapted with the reference's fine layers (ψ = 0.5 samples, MindTheGap)."""
        self.param.eval()
        src = self.G.synthesis(self.preview_ws)
        trg = self.param.synthesize(self.G, self.preview_ws)
        mixed = self.param.synthesize(self.G, style_mix(self.mix_ws, self.reference_latent))
        return torch.cat([src, trg, mixed]).float().cpu(), self.preview_ws.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return {**step_state(self.param, self.optimizer, self.scaler, self.rng),
                "reference_sha256": self.reference.sha256, "reference_latent": self.reference_latent.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_reference_unchanged(state["reference_sha256"], self.reference, self.config.image)
        load_step_state(state, self.param, self.optimizer, self.scaler, self.rng)
        self._set_reference_latent(state["reference_latent"])

    def metadata(self) -> dict[str, Any]:
        return reference_metadata(self.config, self.clip.spec, self.reference)

    def save_result(self, path: Path) -> None:
        domain = self.param.to_domain_file(self.G, self.metadata())
        save_domain_with_reference(path, domain, self.reference_latent)
