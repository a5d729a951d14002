"""Real photos in adapted domains: invert a photo, render it with a domain file, MindTheGap style mixing.

* ``invert_photo``: II2S inversion of an image file (optionally FFHQ-aligned first) through the
  latent cache of :func:`hyperdomainnet.inversion.cached_invert`.
* ``style_mix``: MindTheGap rendering — W+ layers ``< MIX_FROM`` (= 7) from the given codes, the
  fine layers ``≥ MIX_FROM`` from the reference image's inverted latent w_ref.
* Image-domain files store w_ref as the extra tensor ``reference_latent`` (1, n_latent, D) next to
  the vector (``save_domain_with_reference`` / ``reference_latent``); ``Domain.load`` reads
  it into ``Domain.tensors``.
* ``stylize``: photo → (photo, reconstruction G(w), adapted G_B(w), mixed G_B(w[:7] ‖ w_ref[7:])).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import paths
from .domain.files import Domain
from .domain.parameterizations import Parameterization
from .errors import HDNError
from .images import Fit, align_face, image_sha256, load_image, save_image
from .inversion import FORMAT_VERSION, LATENT_FORMAT, PNORM_SAMPLES, write_safetensors, cached_invert
from .stylegan2.generator import Generator

MIX_FROM = 7          # first W+ index taken from the reference latent (MindTheGap)
MIX_TRUNCATION = 0.5  # ψ of the random samples mixed with the reference in previews
REFERENCE_LATENT = "reference_latent"
ALIGNED_DIR = "aligned"

__all__ = ["MIX_FROM", "MIX_TRUNCATION", "REFERENCE_LATENT", "InversionOptions", "Inverted", "Stylized",
           "aligned_copy", "invert_photo", "save_latent", "style_mix", "reference_latent",
           "save_domain_with_reference", "stylize"]


@dataclass(frozen=True)
class InversionOptions:
    """II2S settings for a photo (defaults: the official HyperDomainNet ones)."""

    steps: int = 1000
    lambda_p: float = 1e-3
    fit: Fit = "crop"
    align: bool = False
    lpips_random_backbone: bool = False
    pnorm_samples: int | None = None  # None: inversion.PNORM_SAMPLES


@dataclass
class Inverted:
    """A photo fitted to the generator (1, 3, S, S), its W+ code and G(code)."""

    image: torch.Tensor
    latent: torch.Tensor
    reconstruction: torch.Tensor
    name: str
    sha256: str
    losses: dict[str, float]
    cached: bool

    def pair(self) -> torch.Tensor:
        """(2, 3, S, S): the photo and its reconstruction, side by side in a grid."""
        return torch.cat([self.image, self.reconstruction]).float().cpu()


def aligned_copy(path: str | Path, size: int, device: str = "cpu") -> Path:
    """The FFHQ-aligned ``size`` px crop of a photo, cached as PNG under ``HDN_HOME/aligned``."""
    out = paths.subdir(ALIGNED_DIR) / f"{image_sha256(path)[:20]}-{size}.png"
    if not out.is_file():
        save_image(align_face(path, size, device), out)
    return out


def invert_photo(G: Generator, path: str | Path, options: InversionOptions = InversionOptions(),
                 progress: bool = True) -> Inverted:
    """II2S inversion of an image file (cached by image hash, generator and settings)."""
    path = Path(path).expanduser()
    sha = image_sha256(path)
    device = G.latent_avg.device
    source = aligned_copy(path, G.size, str(device)) if options.align else path
    result = cached_invert(G, source, steps=options.steps, lambda_p=options.lambda_p, fit=options.fit,
                           lpips_random_backbone=options.lpips_random_backbone,
                           pnorm_samples=options.pnorm_samples or PNORM_SAMPLES, progress=progress)
    with warnings.catch_warnings():
        if not result.cached:  # cached_invert has just loaded (and warned about) this image
            warnings.simplefilter("ignore")
        image = load_image(source, G.size, options.fit).to(device)
    final = result.losses[-1] if result.losses else {}
    return Inverted(image, result.latent, result.reconstruction, path.name, sha, final, result.cached)


def save_latent(path: str | Path, inverted: Inverted, G: Generator, options: InversionOptions) -> Path:
    """Write the W+ code as safetensors (tensor ``latent``) with the image hash, generator and settings."""
    meta = {"format": LATENT_FORMAT, "version": FORMAT_VERSION, "image": inverted.name,
            "image_sha256": inverted.sha256, "generator": G.identity, "settings": asdict(options),
            "losses": inverted.losses}
    write_safetensors(Path(path), {"latent": inverted.latent}, meta)
    return Path(path)


def style_mix(ws: torch.Tensor, reference: torch.Tensor, start: int = MIX_FROM) -> torch.Tensor:
    """W+ codes (B, L, D) with layers ≥ ``start`` replaced by the reference's (1, L, D)."""
    if reference.shape[1:] != ws.shape[1:]:
        raise HDNError(f"the reference latent has shape {tuple(reference.shape[1:])} but the generator's W+ "
                       f"codes are {tuple(ws.shape[1:])}; use the generator the domain was trained on")
    mixed = ws.clone()
    mixed[:, start:] = reference[:, start:].to(ws)
    return mixed


def reference_latent(domain: Domain) -> torch.Tensor | None:
    """The inverted reference latent (1, L, D) of an image-domain file, or None."""
    return domain.tensors.get(REFERENCE_LATENT)


def save_domain_with_reference(path: str | Path, domain: Domain, latent: torch.Tensor) -> Path:
    """``Domain.save`` with the extra tensor ``reference_latent`` (vector kinds only)."""
    if domain.vector is None:
        raise ValueError("a reference latent can only be stored next to a domain vector")
    with_latent = replace(domain, tensors={**domain.tensors, REFERENCE_LATENT: latent})
    return with_latent.save(path)


@dataclass
class Stylized:
    """A photo rendered in a domain; ``mixed`` is None without reference style mixing."""

    inverted: Inverted
    adapted: torch.Tensor
    mixed: torch.Tensor | None

    def strip(self) -> torch.Tensor:
        """(N, 3, S, S): photo, reconstruction, adapted[, adapted with reference style mixing]."""
        rendered = [self.adapted] + ([self.mixed] if self.mixed is not None else [])
        return torch.cat([self.inverted.pair()] + [t.float().cpu() for t in rendered])


def stylize(G: Generator, domain: Domain, photo: str | Path, options: InversionOptions = InversionOptions(),
            mix: bool | None = None, scale: float = 1.0, progress: bool = True) -> Stylized:
    """Invert ``photo`` into w and render G_B(w) — and G_B(style_mix(w, w_ref)) when the domain has
    a reference latent and ``mix`` is not False (``mix=True`` requires one)."""
    domain.check_generator(G)
    reference = reference_latent(domain)
    if mix and reference is None:
        raise HDNError("the domain file has no reference latent (it was not trained from an image); "
                       "drop --mix")
    param = Parameterization.from_domain_file(domain, G)
    inverted = invert_photo(G, photo, options, progress)
    with torch.no_grad():
        adapted = param.synthesize(G, inverted.latent, scale)
        mixed = None
        if reference is not None and mix is not False:
            mixed = param.synthesize(G, style_mix(inverted.latent, reference), scale)
    return Stylized(inverted, adapted, mixed)
