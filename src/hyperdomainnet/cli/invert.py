"""``hdn invert`` (photos → W+ latents) and ``hdn stylize`` (photos → a domain, by file, name or prompt).

Inversion is by an encoder (``--encoder``: ReStyle pSp / e4e, iterative, or encoder4editing's
single-pass e4e; the default for the FFHQ 1024 generator) or by II2S optimisation
(``--encoder ii2s``; the default for other generators). Photos for a face encoder are
FFHQ-aligned first unless ``--no-align``. All outputs are
written after the work, each file atomically, into a destination checked before the work.
"""
from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..errors import ConfigError, HDNError
from ..ranges import LAMBDA_P_RANGE, STRENGTH, finite_in
from ..paths import unique_names
from . import options
from .app import app
from .console import CAPTIONS

if TYPE_CHECKING:
    from ..domain.files import Domain
    from ..encoders import PhotoEncoder
    from ..stylegan2.generator import Generator
    from ..stylize import Inverted, InversionOptions

DEFAULT_ENCODER = "restyle-psp-ffhq"
II2S = "ii2s"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

PHOTOS = typer.Argument(..., help="Photos, or folders of photos (PNG, JPEG, WebP, …).")
ENCODER = typer.Option(
    None, "--encoder", help=f"{DEFAULT_ENCODER} | restyle-e4e-ffhq | e4e-ffhq | FILE | {II2S} "
                            f"(default: {DEFAULT_ENCODER} for the FFHQ 1024 generator, else {II2S}).")
GENERATOR = typer.Option(None, "--generator",
                         help="Zoo name, checkpoint or random:<size> (default: the encoder's generator; "
                              "ffhq for ii2s).")
ITERATIONS = typer.Option(5, "--iterations", min=1, help="ReStyle encoder iterations (e4e-ffhq: one pass).")
REFINE = typer.Option(0, "--refine", min=0, help="II2S steps started from the encoder's code (0: none).")
BATCH = options.batch_size(4, "Photos per encoder forward.", min=1)
STEPS = typer.Option(1000, "--steps", min=0, help="II2S optimisation steps (with --encoder ii2s).")
LAMBDA_P = typer.Option(1e-3, "--lambda-p", min=0.0, help="II2S P-norm weight (1e-3 HyperDomainNet, 1e-2 MindTheGap).")
FIT = typer.Option("crop", "--fit", help="crop (centre square) | pad (white letterbox).")
ALIGN = typer.Option(None, "--align/--no-align",
                     help="FFHQ-align faces first, as the research code (default: with a face encoder such as the "
                          "FFHQ ones; the landmark model is downloaded on first use).")
FORCE = options.force("Write into a non-empty --out directory.")
LPIPS_RANDOM = typer.Option(False, "--lpips-random-backbone",
                            help="II2S: LPIPS with a random backbone (offline use and tests; no real quality).")
PNORM_SAMPLES = typer.Option(None, "--pnorm-samples", min=2,
                             help="II2S: mapped latents for the P-norm statistics (default 1,000,000).")


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print each warning raised inside as one ``warning: …`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                typer.echo(f"warning: {message}", err=True)


def collect_photos(given: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their photos (sorted); a folder without photos, or a file
    that is not a readable image, is an error before any model is loaded."""
    from ..images import open_image

    photos: list[Path] = []
    for path in given:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
            if not found:
                raise ConfigError(f"folder {path} holds no photos ({', '.join(PHOTO_SUFFIXES)}); pass photo files")
            photos.extend(found)
        elif not path.exists():
            raise ConfigError(f"photo {path} does not exist; check the path")
        else:
            photos.append(path)
    for photo in photos:
        open_image(photo, draft_size=64)
    return photos


def output_stems(photos: list[Path]) -> list[str]:
    """One distinct, file-name-safe stem per photo (``name``, ``name-2``, … on clashes)."""
    return unique_names((photo.stem for photo in photos), fallback="photo")


def _ii2s_options(steps: int, lambda_p: float, fit: str, align: bool, lpips_random: bool,
                  pnorm_samples: Optional[int]) -> InversionOptions:
    from ..images import FITS
    from ..stylize import InversionOptions

    if fit not in FITS:
        raise ConfigError(f"--fit {fit!r}: use one of {', '.join(FITS)}")
    finite_in(lambda_p, "--lambda-p", LAMBDA_P_RANGE)
    return InversionOptions(steps, lambda_p, fit, align, lpips_random, pnorm_samples)  # type: ignore[arg-type]


def _is_ffhq_1024(G: Generator) -> bool:
    from .. import zoo

    if G.size != 1024:
        return False
    try:
        return "ffhq" in zoo.resolve(str(G.identity.get("name"))).dataset.lower()
    except HDNError:
        return False


class Inverter:
    """The inversion a command runs: an encoder (``encoder`` set) or II2S, and the generator."""

    def __init__(self, encoder: Optional[str], generator: Optional[str], device: str, precision: str = "fp32") -> None:
        from ..loaders import load_generator
        from ..device import resolve_device, resolve_precision

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        G = load_generator(generator, self.device) if generator else None
        if encoder is None:
            encoder = DEFAULT_ENCODER if G is None or _is_ffhq_1024(G) else II2S
        self.encoder: PhotoEncoder | None = None
        if encoder.lower() != II2S:
            from ..encoders import load_encoder

            self.encoder = load_encoder(encoder, self.device)
            if G is not None and (G.size, G.n_latent) != (self.encoder.generator.size, self.encoder.generator.n_latent):
                raise ConfigError(f"the encoder {self.encoder.name} inverts into a {self.encoder.generator.size} px "
                                  f"generator but --generator is {G.size} px; drop --generator or pick one "
                                  "of the encoder's resolution")
        self.G: Generator = G if G is not None else (self.encoder.generator if self.encoder is not None
                                                     else load_generator("ffhq", self.device))
        from ..device import prepare_generator

        prepare_generator(self.G, self.device)

    @property
    def method(self) -> str:
        return self.encoder.name if self.encoder is not None else II2S

    def run(self, photos: list[Path], iterations: int, refine: int, batch_size: int, align: Optional[bool],
            ii2s: InversionOptions, progress: bool) -> tuple[list[Inverted], dict[str, Any]]:
        """The inverted photos and the settings to record next to their latents."""
        from dataclasses import asdict, replace

        from ..stylize import encode_photos, invert_photo, resolve_align

        if self.encoder is None:
            options = replace(ii2s, align=bool(align))
            return [invert_photo(self.G, p, options, progress) for p in photos], {"method": II2S, **asdict(options)}
        refine_options = replace(ii2s, steps=refine) if refine else None
        inverted = encode_photos(self.encoder, photos, iterations, ii2s.fit, align, refine_options, self.G,
                                 batch_size, progress, self.precision)
        settings = {"method": "encoder", "encoder": self.encoder.name, "encoder_kind": self.encoder.kind,
                    "iterations": iterations if self.encoder.iterative else 1, "fit": ii2s.fit,
                    "align": resolve_align(self.encoder, align), "refine": refine,
                    "lambda_p": ii2s.lambda_p, "precision": self.precision}
        return inverted, settings


@app.command()
def invert(
    photos: list[Path] = PHOTOS,
    out: Path = typer.Option(..., "--out", help="Output directory: NAME-latent.safetensors, NAME-reconstruction.png."),
    encoder: Optional[str] = ENCODER, generator: Optional[str] = GENERATOR, iterations: int = ITERATIONS,
    refine: int = REFINE, batch_size: int = BATCH, steps: int = STEPS, lambda_p: float = LAMBDA_P,
    fit: str = FIT, align: Optional[bool] = ALIGN, device: str = options.DEVICE, precision: str = options.PRECISION,
    force: bool = FORCE, lpips_random_backbone: bool = LPIPS_RANDOM, pnorm_samples: Optional[int] = PNORM_SAMPLES,
    progress: bool = options.PROGRESS, captions: bool = CAPTIONS,
) -> None:
    """Invert photos into the generator's W+ space (an encoder, or II2S; see --encoder)."""
    from ..atomic import check_output_dir
    from ..images import save_grid
    from ..latent import Latent

    options = _ii2s_options(steps, lambda_p, fit, False, lpips_random_backbone, pnorm_samples)
    check_output_dir(out, force)
    files = collect_photos(photos)
    with _warnings_as_lines():
        inverter = Inverter(encoder, generator, device, precision)
        inverted, settings = inverter.run(files, iterations, refine, batch_size, align, options, progress)
    for stem, item in zip(output_stems(files), inverted):
        Latent(item.latent, item.name, item.sha256, inverter.G.identity, settings, item.losses).save(
            out / f"{stem}-latent.safetensors")
        save_grid(item.pair(), out / f"{stem}-reconstruction.png", nrow=2,
                  columns=[item.name, "reconstruction"] if captions else None)
        typer.echo(f"inverted {item.name} by {inverter.method}{' (cached)' if item.cached else ''}: "
                   f"{out / (stem + '-latent.safetensors')}" + _losses_text(item))


def _losses_text(item: Inverted) -> str:
    """`` (total …, mse …, lpips …, p_norm …)``: a photo's final II2S losses, or "" without II2S."""
    losses = ", ".join(f"{k} {v:.4g}" for k, v in item.losses.items())
    return f" ({losses})" if losses else ""


@app.command()
def stylize(
    photos: Optional[list[Path]] = typer.Argument(None, help="Photos, or folders of photos."),
    out: Path = typer.Option(..., "--out", help="Output directory: NAME-stylized.png per photo and grid.png."),
    text: Optional[str] = typer.Option(None, "--text", help="Prompt: the hypernetwork predicts its domain."),
    hypernet: str = typer.Option("hdn-large", "--hypernet", help="HyperDomainNet for --text: zoo name or file."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Domain file or zoo name (instead of --text)."),
    image: Optional[Path] = typer.Option(None, "--image", hidden=True, help="A photo (same as the argument)."),
    encoder: Optional[str] = ENCODER, generator: Optional[str] = GENERATOR, iterations: int = ITERATIONS,
    refine: int = REFINE, batch_size: int = BATCH,
    mix: Optional[bool] = typer.Option(
        None, "--mix/--no-mix",
        help="Reference style mixing on layers ≥ 7 (default: when the domain has a reference)."),
    strength: float = typer.Option(1.0, help="Domain strength α (1 = as trained)."),
    steps: int = STEPS, lambda_p: float = LAMBDA_P, fit: str = FIT, align: Optional[bool] = ALIGN,
    device: str = options.DEVICE, precision: str = options.PRECISION, force: bool = FORCE,
    lpips_random_backbone: bool = LPIPS_RANDOM,
    pnorm_samples: Optional[int] = PNORM_SAMPLES, progress: bool = options.PROGRESS, captions: bool = CAPTIONS,
) -> None:
    """Render photos in a domain given by --text (and a hypernetwork) or --domain:
    photo | reconstruction | stylised [| stylised + reference style]."""
    import torch

    from ..atomic import atomic_path, check_output_dir
    from ..images import save_grid
    from ..loaders import load_domain
    from ..render import domain_name, row_label
    from ..stylize import check_domain, stylize_inverted, text_domain

    given = list(photos or []) + ([image] if image is not None else [])
    if not given:
        raise ConfigError("no photo given; pass one or more photos (or folders): hdn stylize PHOTO… --text \"…\"")
    if (text is None) == (domain is None):
        raise ConfigError("pass exactly one of --text \"prompt\" (with --hypernet) or --domain NAME|FILE")
    finite_in(strength, "--strength", STRENGTH)
    options = _ii2s_options(steps, lambda_p, fit, False, lpips_random_backbone, pnorm_samples)
    check_output_dir(out, force)
    files = collect_photos(given)
    dom = load_domain(domain) if domain is not None else None
    if dom is not None and generator is None and encoder is None and dom.generator.get("name"):
        generator = _domain_generator(dom, domain)
    with _warnings_as_lines():
        inverter = Inverter(encoder, generator, device, precision)
        if dom is None:
            dom = text_domain(hypernet, text or "", inverter.G)
        check_domain(inverter.G, dom, mix)  # before the inversion's work
        inverted, _ = inverter.run(files, iterations, refine, batch_size, align, options, progress)
        results = stylize_inverted(inverter.G, dom, inverted, mix, strength, batch_size, inverter.precision)
    strips = [r.strip() for r in results]
    name = row_label(text if text is not None else domain_name(dom, str(domain)), strength)
    columns = ["photo", "reconstruction", name, f"{name} + reference style"][:strips[0].shape[0]] if captions else None
    written = [save_grid(strip, out / f"{stem}-stylized.png", nrow=strip.shape[0], columns=columns)
               for stem, strip in zip(output_stems(files), strips)]
    if len(strips) == 1:  # the grid is that strip: copy its file rather than encode the PNG again
        with atomic_path(out / "grid.png") as tmp:
            shutil.copyfile(written[0], tmp)
    else:
        save_grid(torch.cat(strips), out / "grid.png", nrow=strips[0].shape[0], columns=columns,
                  rows=[item.name for item in inverted] if captions else None)
    for item in inverted:
        if item.losses:
            typer.echo(f"{item.name}: final II2S losses{_losses_text(item)}")
    label = repr(text) if text is not None else domain
    mixed = " | stylised + reference style" if results[0].mixed is not None else ""
    typer.echo(f"stylised {len(results)} photo{'s' * (len(results) > 1)} as {label} by {inverter.method}: "
               f"{out / 'grid.png'} (photo | reconstruction | stylised{mixed})")


def _domain_generator(dom: Domain, domain: Optional[str]) -> Optional[str]:
    """The generator a domain file names, when it is loadable; None lets the encoder default apply."""
    from ..loaders import resolve_zoo_spec

    name = str(dom.generator["name"])
    if name.startswith("random:") or Path(name).exists():
        return name
    try:
        resolve_zoo_spec(name)
    except HDNError:
        raise ConfigError(f"the domain {domain} was made for generator {name!r}, which is not a file nor a zoo "
                          "name here; pass --generator or --encoder") from None
    return name
