"""``hdn adapt text``: text-driven single-domain adaptation."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import adapt_app
from .train_options import (BETAS, CONFIG, DEVICE, GENERATOR, GRID_EVERY, GRID_SAMPLES, LOG_EVERY, LOW_MEMORY, LR,
                            MIXING, NOISE_MODE, OUT, PLACEMENT, PRECISION, PROGRESS, RESUME, SAVE_EVERY, SEED,
                            STEPS, TENSORBOARD, WANDB, WEIGHT_DECAY, parse_betas, parse_losses, run_settings)


@adapt_app.command("text")
def adapt_text(
    out: Path = OUT,
    generator: Optional[str] = GENERATOR,
    source: Optional[str] = typer.Option(None, help="Text describing the generator's domain, e.g. 'Photo'."),
    target: Optional[list[str]] = typer.Option(None, help="Text describing the new domain; repeat it to train "
                                               "several targets in one run ('Target - Source' sets a source)."),
    targets: Optional[Path] = typer.Option(None, "--targets", help="File of targets trained in one run: one 'Target' "
                                           "or 'Target - Source' per line."),
    preset: Optional[str] = typer.Option(None, help="Official config preset, e.g. td_single_ffhq."),
    config: Optional[Path] = CONFIG,
    steps: Optional[int] = STEPS,
    batch: Optional[int] = typer.Option(None, help="Latents per step."),
    lr: Optional[float] = LR,
    betas: Optional[str] = BETAS,
    weight_decay: Optional[float] = WEIGHT_DECAY,
    mixing: Optional[float] = MIXING,
    noise_mode: Optional[str] = NOISE_MODE,
    loss: Optional[list[str]] = typer.Option(None, help="NAME=COEF, repeatable: direction, global, indomain, offsets_l2, offsets_l1."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0' or random:tiny."),
    parameterization: Optional[str] = typer.Option(None, help="domain_vector, style_offset, full, or an ablation."),
    placement: Optional[str] = PLACEMENT,
    phase: Optional[str] = typer.Option(None, help="Layer group for full fine-tuning."),
    auto_layer_k: Optional[int] = typer.Option(None, help="Adaptive layer selection: layers kept (0 = off)."),
    auto_layer_iters: Optional[int] = typer.Option(None, help="Adaptive layer selection: W+ optimisation steps."),
    seed: Optional[int] = SEED,
    device: Optional[str] = DEVICE,
    precision: Optional[str] = PRECISION,
    low_memory: Optional[bool] = LOW_MEMORY,
    clip_device: Optional[str] = typer.Option(None, help="Device of the CLIP encoders, e.g. cuda:1 (default: --device)."),
    micro_batch: Optional[int] = typer.Option(None, help="Render at most this many samples at a time (same gradient)."),
    log_every: Optional[int] = LOG_EVERY,
    save_every: Optional[int] = SAVE_EVERY,
    grid_every: Optional[int] = GRID_EVERY,
    grid_samples: Optional[int] = GRID_SAMPLES,
    tensorboard: Optional[bool] = TENSORBOARD,
    wandb: Optional[bool] = WANDB,
    resume: bool = RESUME,
    progress: bool = PROGRESS,
) -> None:
    """Adapt a generator to a domain described in words (StyleGAN-NADA + indomain losses)."""
    from ..training.config import TextAdaptConfig, build_config
    from ..training.loop import run_training
    from ..training.multi_target import MultiTargetTextTrainer, read_targets_file
    from ..training.text import TextTrainer

    several = list(target or []) + (read_targets_file(targets) if targets else [])
    single = target[0] if target and len(several) == 1 and not targets else None
    overrides = dict(generator=generator, source=source, target=single, targets=None if single else several or None,
                     steps=steps, batch=batch, lr=lr,
                     betas=parse_betas(betas), weight_decay=weight_decay, mixing=mixing, noise_mode=noise_mode,
                     losses=parse_losses(loss), clip=clip, parameterization=parameterization,
                     placement=placement, phase=phase, auto_layer_k=auto_layer_k,
                     auto_layer_iters=auto_layer_iters, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every,
                     grid_samples=grid_samples, tensorboard=tensorboard, wandb=wandb, low_memory=low_memory,
                     clip_device=clip_device, micro_batch=micro_batch)
    cfg = build_config(TextAdaptConfig, *run_settings(out, resume, preset, config, overrides, trainer="text"))
    if cfg.targets:
        result = run_training(MultiTargetTextTrainer(cfg), out, resume=resume, progress=progress)
        typer.echo(f"domains adapted to {len(cfg.targets)} targets: {result}")
    else:
        result = run_training(TextTrainer(cfg), out, resume=resume, progress=progress)
        typer.echo(f"domain adapted to {cfg.target!r}: {result}")
