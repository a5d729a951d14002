"""Real photos in adapted domains: invert photos, render them with a domain, MindTheGap style mixing.

* ``invert_photo``: II2S inversion of an image file (optionally FFHQ-aligned first) through the
  latent cache of :func:`hyperdomainnet.inversion.cached_invert`.
* ``encode_photos``: several photos at once by an encoder (batched), FFHQ-aligned first for a
  face encoder (as the research code does), optionally refined by II2S started from the
  encoder's codes.
* ``text_domain``: the domain a HyperDomainNet predicts for a prompt; ``image_domain``: the one an
  image HyperDomainNet predicts for a reference image, carrying its inverted latent (style mixing).
* ``style_mix``: MindTheGap rendering — W+ layers ``< MIX_FROM`` (= 7) from the given codes, the
  fine layers ``≥ MIX_FROM`` from the reference image's inverted latent w_ref (training previews).
* Image-domain files store w_ref as the extra tensor ``reference_latent`` (1, n_latent, D) next to
  the vector, and the mixing rule (``save_domain_with_reference``); renders apply it by
  :meth:`Domain.mix`.
* ``stylize``: photo → (photo, reconstruction G(w), adapted G_B(w), mixed G_B(w[:7] ‖ w_ref[7:]));
  ``stylize_inverted`` does the rendering for photos already inverted.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import paths
from .alignment import align_face
from .device import autocast
from .domain.files import MIX_FROM, REFERENCE_LATENT, Domain, mix_reference
from .domain.parameterizations import synthesize
from .encoders.preprocess import encoder_input
from .errors import ConfigError, HDNError
from .hypernet.prompts import prompt_domains, reference_inputs, vector_domains
from .images import Fit, image_sha256, load_image, save_image
from .inversion import PNORM_SAMPLES, InversionResult, cached_invert, invert
from .loaders import artefact_path, load_hypernet
from .stylegan2.generator import Generator, layout_difference

if TYPE_CHECKING:
    from .encoders import PhotoEncoder

MIX_TRUNCATION = 0.5  # ψ of the random samples mixed with the reference in previews
ALIGNED_DIR = "aligned"
ALIGNED_BY = "dlib"   # in the cached file names: copies aligned from other landmarks are not reused
ENCODER_BATCH = 4     # photos per encoder forward

__all__ = ["MIX_FROM", "MIX_TRUNCATION", "REFERENCE_LATENT", "InversionOptions", "Inverted", "Stylized",
           "aligned_copy", "resolve_align", "invert_photo", "encode_photos", "text_domain", "image_domain",
           "style_mix", "reference_latent", "save_domain_with_reference", "check_domain", "stylize", "stylize_inverted"]


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


def aligned_copy(path: str | Path, size: int) -> Path:
    """The FFHQ-aligned ``size`` px crop of a photo, cached as PNG under ``HDN_HOME/aligned``."""
    out = paths.subdir(ALIGNED_DIR) / f"{image_sha256(path)[:20]}-{size}-{ALIGNED_BY}.png"
    if not out.is_file():
        save_image(align_face(path, size), out)
    return out


def invert_photo(G: Generator, path: str | Path, options: InversionOptions = InversionOptions(),
                 progress: bool = True) -> Inverted:
    """II2S inversion of an image file (cached by image hash, generator and settings)."""
    path = Path(path).expanduser()
    sha = image_sha256(path)
    device = G.latent_avg.device
    source = aligned_copy(path, G.size) if options.align else path
    result = cached_invert(G, source, steps=options.steps, lambda_p=options.lambda_p, fit=options.fit,
                           lpips_random_backbone=options.lpips_random_backbone,
                           pnorm_samples=options.pnorm_samples or PNORM_SAMPLES, progress=progress)
    with warnings.catch_warnings():
        if not result.cached:  # cached_invert has just loaded (and warned about) this image
            warnings.simplefilter("ignore")
        image = load_image(source, G.size, options.fit).to(device)
    final = result.losses[-1] if result.losses else {}
    return Inverted(image, result.latent, result.reconstruction, path.name, sha, final, result.cached)


def resolve_align(E: PhotoEncoder, align: bool | None) -> bool:
    """Whether photos for ``E`` are FFHQ-aligned: ``align`` if given, else whether ``E`` is a face
    encoder (trained on aligned faces, as the FFHQ ones)."""
    return E.faces if align is None else align


def photo_source(path: Path, size: int, align: bool, strict: bool = True) -> Path:
    """The file to invert: the FFHQ-aligned face (``align``) or the photo itself. Unless
    ``strict``, a photo without a face is used as it is, with a warning."""
    if not align:
        return path
    try:
        return aligned_copy(path, size)
    except HDNError as exc:
        if strict or "no face" not in str(exc):
            raise
        warnings.warn(f"no face found in {path.name}; using the photo as it is (the FFHQ encoder expects "
                      "a face, so expect a poor reconstruction)", UserWarning, stacklevel=2)
        return path


@torch.no_grad()
def encode_photos(E: PhotoEncoder, photos: Sequence[str | Path], iterations: int = 5, fit: Fit = "crop",
                  align: bool | None = None, refine: InversionOptions | None = None,
                  G: Generator | None = None, batch_size: int = ENCODER_BATCH,
                  progress: bool = True, precision: str = "fp32") -> list[Inverted]:
    """Invert photo files by the encoder ``E``, ``batch_size`` photos per forward.

    Photos are FFHQ-aligned first (at ``G``'s size) when :func:`resolve_align` says so (a photo
    without a face is then used as it is, with a warning, unless ``align`` is True). The encoder
    reads each one as :func:`~hyperdomainnet.encoders.preprocess.encoder_input` makes it (bilinear
    ``Resize`` to 256×256, as the research code); the W+ codes are rendered by ``G``
    (default ``E.generator``, which must have the encoder's resolution). With ``refine`` (its
    ``steps`` > 0), II2S continues from the encoder's codes against the photo at full size
    (its final render is the reconstruction). The encoder passes and renders run under
    the resolved ``precision`` (``device.resolve_precision``; the codes and images come back in float32); II2S
    optimises in float32.
    """
    G = G if G is not None else E.generator
    if G.size != E.generator.size or G.n_latent != E.generator.n_latent:
        raise ConfigError(f"the encoder {E.name} inverts into a {E.generator.size} px generator but the "
                          f"generator is {G.size} px; use a generator of the encoder's resolution")
    device = E.device
    inverted: list[Inverted] = []
    for start in range(0, len(photos), batch_size):
        chunk = [Path(p).expanduser() for p in photos[start:start + batch_size]]
        sources = [photo_source(p, G.size, resolve_align(E, align), strict=bool(align)) for p in chunk]
        x = torch.cat([encoder_input(s, fit) for s in sources])
        full = torch.cat([load_image(s, G.size, fit) for s in sources]).to(device)
        with autocast(device, precision):
            ws = E.invert(x, iterations).float()
        losses: list[dict[str, float]] = [{} for _ in chunk]
        if refine is not None and refine.steps > 0:
            with torch.enable_grad():
                result = _refine(G, full, ws, refine, progress)
            ws, reconstruction = result.latent, result.reconstruction.float()
            losses = result.image_losses or losses   # each photo's own losses at the last step
        else:
            with autocast(device, precision):
                reconstruction = G.synthesis(ws, noise_mode="const").float()
        for i, path in enumerate(chunk):
            inverted.append(Inverted(full[i:i + 1], ws[i:i + 1], reconstruction[i:i + 1], path.name,
                                     image_sha256(path), losses[i], False))
    return inverted


def _refine(G: Generator, images: torch.Tensor, init: torch.Tensor, options: InversionOptions,
            progress: bool) -> InversionResult:
    """II2S with ``options`` from the codes ``init``."""
    from .inversion import pnorm_stats
    from .perceptual import load_lpips

    return invert(G, images, steps=options.steps, lambda_p=options.lambda_p,
                  lpips_net=load_lpips("vgg", images.device, options.lpips_random_backbone),
                  pnorm=pnorm_stats(G, options.pnorm_samples or PNORM_SAMPLES), progress=progress, init=init)


def text_domain(hypernet: str | Path, prompt: str, G: Generator) -> Domain:
    """The domain vector the HyperDomainNet ``hypernet`` (file or zoo name) predicts for ``prompt``,
    checked to fit ``G``."""
    if not prompt.strip():
        raise ConfigError("--text is empty; give a prompt such as \"3D render in the style of Pixar\"")
    path = artefact_path(hypernet, "hypernet")
    domain = prompt_domains(path, [prompt.strip()], G.latent_avg.device)[0]
    if list(domain.domain_layout) != list(G.domain_layout):
        trained = domain.generator.get("name") or "another generator"
        raise ConfigError(f"the hypernetwork {Path(str(hypernet)).name} was trained for {trained} "
                          f"({layout_difference(domain.domain_layout, G.domain_layout)}); "
                          "pass a hypernetwork trained for the encoder's generator")
    return domain


def image_domain(hypernet: str | Path, reference: str | Path, G: Generator,
                 options: InversionOptions = InversionOptions(), progress: bool = True) -> Domain:
    """The domain an image HyperDomainNet ``hypernet`` (file or zoo name) predicts for the image
    ``reference``, carrying the reference's II2S-inverted W+ codes (``invert_photo`` with
    ``options``): it renders with them on layers ≥ ``MIX_FROM`` (``Domain.mix``), as released
    image domains do."""
    path = artefact_path(hypernet, "hypernet")
    net = load_hypernet(path, G.latent_avg.device)
    vectors = net.domain_vectors(reference_inputs(net, [reference], G.size, options.fit))
    domain = vector_domains(net, vectors, [{"reference": Path(reference).name, "hypernet": str(path)}])[0]
    domain.check_generator(G)
    return domain.with_reference(invert_photo(G, reference, options, progress).latent.detach().cpu())


def style_mix(ws: torch.Tensor, reference: torch.Tensor, start: int = MIX_FROM) -> torch.Tensor:
    """W+ codes (B, L, D) with layers ≥ ``start`` replaced by the reference's (1, L, D)."""
    return mix_reference(ws, reference, start)


def reference_latent(domain: Domain) -> torch.Tensor | None:
    """The inverted reference latent (1, L, D) of an image-domain file, or None."""
    return domain.tensors.get(REFERENCE_LATENT)


def save_domain_with_reference(path: str | Path, domain: Domain, latent: torch.Tensor) -> Path:
    """``Domain.save`` with the extra tensor ``reference_latent`` and its mixing rule (first replaced
    W+ layer ``MIX_FROM``; vector kinds only)."""
    if domain.vector is None:
        raise ConfigError(f"a reference latent can only be stored next to a domain vector, not a {domain.kind} "
                          "domain; save that domain without one (Domain.save)")
    return domain.with_reference(latent).save(path)


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
    check_domain(G, domain, mix)
    return stylize_inverted(G, domain, [invert_photo(G, photo, options, progress)], mix, scale)[0]


def check_domain(G: Generator, domain: Domain, mix: bool | None) -> None:
    """Raise a one-line error unless ``domain`` fits ``G`` (and has a reference latent if ``mix``)."""
    domain.check_generator(G)
    if mix and reference_latent(domain) is None:
        raise ConfigError("the domain file has no reference latent (it was not trained from an image); "
                          "drop --mix")


@torch.no_grad()
def stylize_inverted(G: Generator, domain: Domain, inverted: Sequence[Inverted], mix: bool | None = None,
                     scale: float = 1.0, batch_size: int = ENCODER_BATCH, precision: str = "fp32") -> list[Stylized]:
    """Render inverted photos in a domain, as :func:`stylize` does, ``batch_size`` per forward,
    under the resolved ``precision`` (``device.resolve_precision``; images come back in float32)."""
    check_domain(G, domain, mix)
    mixing = reference_latent(domain) is not None and mix is not False
    results: list[Stylized] = []
    for start in range(0, len(inverted), batch_size):
        chunk = inverted[start:start + batch_size]
        ws = torch.cat([item.latent for item in chunk])
        with autocast(G.latent_avg.device, precision):
            adapted = synthesize(G, ws, [domain], [scale], style_mixing=False).float()
            mixed = synthesize(G, ws, [domain], [scale]).float() if mixing else None
        results += [Stylized(item, adapted[i:i + 1], None if mixed is None else mixed[i:i + 1])
                    for i, item in enumerate(chunk)]
    return results
