"""``hdn adapt image``: one-shot adaptation to the domain of a reference image (MindTheGap losses)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import adapt_app
from .train_options import (BETAS, CONFIG, DEVICE, GENERATOR, GRID_EVERY, GRID_SAMPLES, LOG_EVERY, LOW_MEMORY, LR,
                            MIXING, NOISE_MODE, OUT, PLACEMENT, PRECISION, PROGRESS, RESUME, SAVE_EVERY, SEED,
                            STEPS, TENSORBOARD, WANDB, WEIGHT_DECAY, parse_betas, parse_losses, run_settings)


@adapt_app.command("image")
def adapt_image(
    out: Path = OUT,
    image: Optional[Path] = typer.Option(None, help="Reference image (PNG, JPEG, WebP, …)."),
    generator: Optional[str] = GENERATOR,
    preset: Optional[str] = typer.Option(None, help="Official config preset: im2im_single."),
    config: Optional[Path] = CONFIG,
    steps: Optional[int] = STEPS,
    batch: Optional[int] = typer.Option(None, help="Latents per step."),
    lr: Optional[float] = LR,
    betas: Optional[str] = BETAS,
    weight_decay: Optional[float] = WEIGHT_DECAY,
    mixing: Optional[float] = MIXING,
    noise_mode: Optional[str] = NOISE_MODE,
    loss: Optional[list[str]] = typer.Option(
        None, help="NAME=COEF, repeatable: direction, clip_within, clip_ref, l2_rec, lpips_rec, global, indomain, "
                   "offsets_l2, offsets_l1."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0' or random:tiny."),
    parameterization: Optional[str] = typer.Option(None, help="domain_vector | style_offset."),
    placement: Optional[str] = PLACEMENT,
    invert_steps: Optional[int] = typer.Option(None, help="II2S steps for the reference image."),
    lambda_p: Optional[float] = typer.Option(None, help="II2S P-norm weight."),
    fit: Optional[str] = typer.Option(None, help="crop (centre square) | pad (white letterbox)."),
    align: Optional[bool] = typer.Option(None, "--align/--no-align",
                                         help="FFHQ-align the face first (pip install face-alignment)."),
    lpips_random_backbone: Optional[bool] = typer.Option(None, "--lpips-random-backbone", hidden=True),
    pnorm_samples: Optional[int] = typer.Option(None, hidden=True),
    seed: Optional[int] = SEED,
    device: Optional[str] = DEVICE,
    precision: Optional[str] = PRECISION,
    low_memory: Optional[bool] = LOW_MEMORY,
    log_every: Optional[int] = LOG_EVERY,
    save_every: Optional[int] = SAVE_EVERY,
    grid_every: Optional[int] = GRID_EVERY,
    grid_samples: Optional[int] = GRID_SAMPLES,
    tensorboard: Optional[bool] = TENSORBOARD,
    wandb: Optional[bool] = WANDB,
    resume: bool = RESUME,
    progress: bool = PROGRESS,
) -> None:
    """Adapt a generator to the domain of one reference image (MindTheGap losses, official im2im_single)."""
    from ..training.config import ImageAdaptConfig, build_config
    from ..training.image import ImageTrainer
    from ..training.loop import run_training

    overrides = dict(image=str(image.expanduser().absolute()) if image else None, generator=generator,
                     steps=steps, batch=batch, lr=lr, betas=parse_betas(betas), weight_decay=weight_decay,
                     mixing=mixing, noise_mode=noise_mode, losses=parse_losses(loss), clip=clip,
                     parameterization=parameterization, placement=placement, invert_steps=invert_steps,
                     lambda_p=lambda_p, fit=fit, align=align, lpips_random_backbone=lpips_random_backbone,
                     pnorm_samples=pnorm_samples, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every,
                     grid_samples=grid_samples, tensorboard=tensorboard, wandb=wandb, low_memory=low_memory)
    cfg = build_config(ImageAdaptConfig, *run_settings(out, resume, preset, config, overrides, trainer="image"))
    trainer = ImageTrainer(cfg, progress=progress)
    result = run_training(trainer, out, resume=resume, progress=progress)
    typer.echo(f"domain adapted to the reference {trainer.reference.name}: {result}")
