"""``hdn invert`` (photo → W+ latent) and ``hdn stylize`` (photo → adapted domain)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import HDNError
from .app import app

if TYPE_CHECKING:
    from ..stylize import InversionOptions

# Inversion options shared by both commands.
STEPS = typer.Option(1000, "--steps", min=0, help="II2S optimisation steps.")
LAMBDA_P = typer.Option(1e-3, "--lambda-p", min=0.0, help="II2S P-norm weight (1e-3 HyperDomainNet, 1e-2 MindTheGap).")
FIT = typer.Option("crop", "--fit", help="crop (centre square) | pad (white letterbox).")
ALIGN = typer.Option(False, "--align", help="FFHQ-align the face first (pip install face-alignment).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")
LPIPS_RANDOM = typer.Option(False, "--lpips-random-backbone", hidden=True)
PNORM_SAMPLES = typer.Option(None, "--pnorm-samples", min=2, hidden=True)
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def _options(steps: int, lambda_p: float, fit: str, align: bool, lpips_random: bool,
             pnorm_samples: Optional[int]) -> InversionOptions:
    from ..images import FITS
    from ..stylize import InversionOptions

    if fit not in FITS:
        raise HDNError(f"--fit {fit!r}: use one of {', '.join(FITS)}")
    return InversionOptions(steps, lambda_p, fit, align, lpips_random, pnorm_samples)  # type: ignore[arg-type]


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HDNError(f"--out {out} is a file; give a directory (it is created if missing)")


@app.command()
def invert(
    image: Path = typer.Argument(..., help="Photo to invert (PNG, JPEG, WebP, …)."),
    out: Path = typer.Option(..., "--out", help="Output directory: latent.safetensors, reconstruction.png."),
    generator: str = typer.Option("ffhq", help="Zoo name, checkpoint path or random:<size> spec."),
    steps: int = STEPS, lambda_p: float = LAMBDA_P, fit: str = FIT, align: bool = ALIGN, device: str = DEVICE,
    lpips_random_backbone: bool = LPIPS_RANDOM, pnorm_samples: Optional[int] = PNORM_SAMPLES,
    progress: bool = PROGRESS,
) -> None:
    """Invert a photo into the generator's W+ space (II2S; cached by image hash)."""
    from ..images import save_grid
    from ..loaders import load_generator
    from ..stylize import invert_photo, save_latent
    from ..training.runtime import resolve_device

    options = _options(steps, lambda_p, fit, align, lpips_random_backbone, pnorm_samples)
    _check_out_dir(out)
    G = load_generator(generator, resolve_device(device))
    inverted = invert_photo(G, image, options, progress)
    save_latent(out / "latent.safetensors", inverted, G, options)
    save_grid(inverted.pair(), out / "reconstruction.png", nrow=2)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in inverted.losses.items())
    typer.echo(f"inverted {inverted.name}{' (cached)' if inverted.cached else ''}: {out / 'latent.safetensors'}, "
               f"{out / 'reconstruction.png'}" + (f" ({losses})" if losses else ""))


@app.command()
def stylize(
    domain: Path = typer.Option(..., "--domain", help="Domain file (domain.safetensors of a run)."),
    image: Path = typer.Option(..., "--image", help="Photo to stylise."),
    out: Path = typer.Option(..., "--out", help="Output directory: stylized.png, adapted.png[, adapted_mixed.png]."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the one recorded in the domain file)."),
    mix: Optional[bool] = typer.Option(
        None, "--mix/--no-mix", help="Reference style mixing on layers ≥ 7 (default: when the domain has a reference)."),
    strength: float = typer.Option(1.0, help="Domain strength α (1 = as trained)."),
    steps: int = STEPS, lambda_p: float = LAMBDA_P, fit: str = FIT, align: bool = ALIGN, device: str = DEVICE,
    lpips_random_backbone: bool = LPIPS_RANDOM, pnorm_samples: Optional[int] = PNORM_SAMPLES,
    progress: bool = PROGRESS,
) -> None:
    """Render a photo in an adapted domain: photo | reconstruction | adapted | adapted + reference style."""
    from ..domain.files import Domain
    from ..images import save_grid, save_image
    from ..loaders import load_generator
    from ..stylize import stylize as stylize_photo
    from ..training.runtime import resolve_device

    options = _options(steps, lambda_p, fit, align, lpips_random_backbone, pnorm_samples)
    _check_out_dir(out)
    dom = Domain.load(domain)
    spec = generator or dom.generator.get("name")
    if not spec:
        raise HDNError(f"{domain} does not name its generator; pass --generator")
    try:
        G = load_generator(spec, resolve_device(device))
    except HDNError as exc:
        if generator:
            raise
        raise HDNError(f"cannot load the domain's generator {spec!r} ({exc}); pass --generator") from None
    result = stylize_photo(G, dom, image, options, mix=mix, scale=strength, progress=progress)
    strip = result.strip()
    save_image(result.adapted, out / "adapted.png")
    if result.mixed is not None:
        save_image(result.mixed, out / "adapted_mixed.png")
    save_grid(strip, out / "stylized.png", nrow=strip.shape[0])
    mixed = " | adapted + reference style" if result.mixed is not None else ""
    typer.echo(f"stylised {result.inverted.name}: {out / 'stylized.png'} (photo | reconstruction | adapted{mixed})")
