"""``hdn hypernet train`` / ``hdn hypernet eval``: the multi-domain HyperDomainNet.

Training runs data-parallel when launched by ``torchrun`` (docs/DISTRIBUTED.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError
from ..ranges import finite_json
from ..seeds import MAX_SEED
from ..training.config import HypernetConfig
from . import options
from .app import app
from .train_options import training_command

hypernet_app = typer.Typer(no_args_is_help=True, help="Train and evaluate HyperDomainNet hypernetworks.")
app.add_typer(hypernet_app, name="hypernet")


def _kind(settings: dict[str, Any]) -> str:
    """Reference images (--images) or a text domain list."""
    return "multi_image" if settings.get("images") is not None else "multi_text"


@training_command(hypernet_app, "train", HypernetConfig,
                  {"multi_text": "td_multiple", "multi_image": "im2im_multiple_base"}, select=_kind)
def train(cfg: HypernetConfig, out: Path, resume: bool, progress: bool) -> None:
    """Train a HyperDomainNet on many text domains (or reference images); runs under torchrun too."""
    from ..training.distributed import run_distributed, shutdown_distributed

    try:
        trainer = _make_trainer(cfg, progress)
        result = run_distributed(trainer, out, trainer.dist, resume=resume, progress=progress)
        if trainer.dist.is_main:
            typer.echo(f"HyperDomainNet trained on {cfg.images or cfg.domains}: {result}")
    finally:
        shutdown_distributed()


def _make_trainer(cfg: HypernetConfig, progress: bool) -> Any:
    """The text or image trainer."""
    from ..training.multi_image import ImageHypernetTrainer
    from ..training.multi_text import TextHypernetTrainer

    return ImageHypernetTrainer(cfg, progress=progress) if cfg.images is not None else TextHypernetTrainer(cfg)


@hypernet_app.command("eval")
def evaluate(
    hypernet: Path = typer.Option(..., "--hypernet", help="HyperDomainNet file or released name (e.g. hdn-20)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json and metrics.md (created)."),
    seen: Optional[str] = typer.Option(None, help="Seen domains: text list (default: the training list) or, "
                                                  "for an image hypernetwork, an image list file."),
    unseen: Optional[list[str]] = typer.Option(None, help="Unseen domains, repeatable (default for text: "
                                                          "test-close and test-far)."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the one the file names)."),
    clip: str = typer.Option("ViT-B/16", help="CLIP encoder for Quality/Diversity (official notebook: ViT-B/16)."),
    samples: int = typer.Option(500, help="Images per domain (seeds SEED … SEED+SAMPLES−1)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="First seed."),
    truncation: float = options.TRUNCATION,
    noise_mode: str = typer.Option("random", help="random (seeded) | const | none."),
    batch_size: int = options.batch_size(),
    style_mixing: bool = typer.Option(True, "--style-mixing/--no-style-mixing",
                                      help="Image hypernetworks: render each reference's domain with the "
                                           "reference's W+ layers ≥ 7 (II2S-inverted), as released image domains."),
    invert_steps: Optional[int] = typer.Option(None, "--invert-steps", min=0,
                                               help="II2S steps per reference (default: as trained, else 1000)."),
    lambda_p: Optional[float] = typer.Option(None, "--lambda-p", help="II2S P-norm weight (default: as trained, "
                                                                      "else 1e-3)."),
    fit: Optional[str] = typer.Option(None, "--fit", help="crop | pad each reference to a square (default: as "
                                                          "trained, else crop)."),
    lpips_random_backbone: bool = typer.Option(False, "--lpips-random-backbone",
                                               help="II2S: LPIPS with a random backbone (offline use and tests; "
                                                    "on when trained so)."),
    pnorm_samples: Optional[int] = typer.Option(None, "--pnorm-samples", min=2,
                                                help="II2S: mapped latents for the P-norm statistics (default: "
                                                     "as trained, else 1,000,000)."),
    device: str = options.DEVICE,
    force: bool = options.force("Write into an --out folder that already holds files."),
    progress: bool = options.PROGRESS,
) -> None:
    """Quality (mean CLIP cosine of images to their domain's text or reference image) and Diversity
    (mean 1 − cosine over image pairs) on seen and unseen domains, as JSON and a Markdown table.
    An image hypernetwork's references are II2S-inverted (cached) and rendered with their style."""
    import json

    from ..atomic import atomic_path, check_output_dir
    from ..device import resolve_device
    from ..hypernet.evaluate import evaluate_hypernet, markdown_report

    if samples < 2:
        raise ConfigError(f"--samples must be at least 2 (diversity compares pairs), got {samples}")
    check_output_dir(out, force)
    report = evaluate_hypernet(hypernet, resolve_device(device), clip, list(range(seed, seed + samples)), seen,
                               unseen, generator, truncation, noise_mode, batch_size, progress, style_mixing,
                               {"steps": invert_steps, "lambda_p": lambda_p, "fit": fit,
                                "lpips_random_backbone": lpips_random_backbone, "pnorm_samples": pnorm_samples})
    out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(report, hypernet.name)
    for name, text in (("metrics.json", json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n"), ("metrics.md", markdown)):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    typer.echo(markdown + f"\nwritten to {out / 'metrics.json'} and {out / 'metrics.md'}")
