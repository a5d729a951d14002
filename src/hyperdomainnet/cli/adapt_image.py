"""``hdn adapt image``: one-shot adaptation to the domain of a reference image (MindTheGap losses)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .adapt_text import _parse_betas, _parse_losses, _run_settings
from .app import adapt_app


@adapt_app.command("image")
def adapt_image(
    out: Path = typer.Option(..., "--out", help="Run directory (created)."),
    image: Optional[Path] = typer.Option(None, help="Reference image (PNG, JPEG, WebP, …)."),
    generator: Optional[str] = typer.Option(None, help="Zoo name, checkpoint path or random:<size> spec."),
    preset: Optional[str] = typer.Option(None, help="Official config preset: im2im_single."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps."),
    batch: Optional[int] = typer.Option(None, help="Latents per step."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    betas: Optional[str] = typer.Option(None, help="Adam betas, e.g. 0.9,0.999."),
    weight_decay: Optional[float] = typer.Option(None, help="Adam weight decay."),
    mixing: Optional[float] = typer.Option(None, help="Style-mixing probability."),
    noise_mode: Optional[str] = typer.Option(None, help="random | const | none (shared by G_A and G_B)."),
    loss: Optional[list[str]] = typer.Option(
        None, help="NAME=COEF, repeatable: direction, clip_within, clip_ref, l2_rec, lpips_rec, global, indomain, "
                   "offsets_l2, offsets_l1."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0' or random:tiny."),
    parameterization: Optional[str] = typer.Option(None, help="domain_vector | style_offset."),
    placement: Optional[str] = typer.Option(None, help="after_demod (official) | before_demod (paper figure)."),
    invert_steps: Optional[int] = typer.Option(None, help="II2S steps for the reference image."),
    lambda_p: Optional[float] = typer.Option(None, help="II2S P-norm weight."),
    fit: Optional[str] = typer.Option(None, help="crop (centre square) | pad (white letterbox)."),
    align: Optional[bool] = typer.Option(None, "--align/--no-align",
                                         help="FFHQ-align the face first (pip install face-alignment)."),
    lpips_random_backbone: Optional[bool] = typer.Option(None, "--lpips-random-backbone", hidden=True),
    pnorm_samples: Optional[int] = typer.Option(None, hidden=True),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | fp16."),
    log_every: Optional[int] = typer.Option(None, help="Steps between log lines."),
    save_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    grid_every: Optional[int] = typer.Option(None, help="Steps between preview grids."),
    grid_samples: Optional[int] = typer.Option(None, help="Samples per preview grid."),
    tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="Also log to TensorBoard."),
    wandb: Optional[bool] = typer.Option(None, "--wandb/--no-wandb", help="Also log to Weights & Biases."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Adapt a generator to the domain of one reference image (MindTheGap losses, official im2im_single)."""
    from ..training.config import ImageAdaptConfig, build_config
    from ..training.image import ImageTrainer
    from ..training.loop import run_training

    overrides = dict(image=str(image.expanduser().absolute()) if image else None, generator=generator,
                     steps=steps, batch=batch, lr=lr, betas=_parse_betas(betas), weight_decay=weight_decay,
                     mixing=mixing, noise_mode=noise_mode, losses=_parse_losses(loss), clip=clip,
                     parameterization=parameterization, placement=placement, invert_steps=invert_steps,
                     lambda_p=lambda_p, fit=fit, align=align, lpips_random_backbone=lpips_random_backbone,
                     pnorm_samples=pnorm_samples, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every,
                     grid_samples=grid_samples, tensorboard=tensorboard, wandb=wandb)
    cfg = build_config(ImageAdaptConfig, *_run_settings(out, resume, preset, config, overrides, trainer="image"))
    trainer = ImageTrainer(cfg, progress=progress)
    result = run_training(trainer, out, resume=resume, progress=progress)
    typer.echo(f"domain adapted to the reference {trainer.reference.name}: {result}")
