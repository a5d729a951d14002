"""``hdn adapt text``: text-driven single-domain adaptation; shared option parsing for trainers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import HDNError
from .app import adapt_app


def _parse_losses(items: Optional[list[str]]) -> Optional[dict[str, float]]:
    """``["direction=1", "indomain=1.5"]`` → {"direction": 1.0, "indomain": 1.5}."""
    if not items:
        return None
    losses = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            losses[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise HDNError(f"--loss {item!r}: the coefficient must be a number, e.g. --loss indomain=1.5") from None
    return losses


def _parse_betas(text: Optional[str]) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise HDNError(f"--betas {text!r}: give two numbers separated by a comma, e.g. 0.9,0.999") from None
    return b1, b2


def _run_settings(out: Path, resume: bool, preset: Optional[str], config_file: Optional[Path],
                  overrides: dict[str, Any], trainer: Optional[str] = None) -> list[dict[str, Any]]:
    """Settings layers: a resumed run uses its stored config (only --steps may change)."""
    from ..training.config import CONFIG_NAME, load_config_file, load_preset

    if resume:
        stored = out / CONFIG_NAME
        if not stored.is_file():
            raise HDNError(f"nothing to resume in {out}: {stored} does not exist")
        return [load_config_file(stored), {"steps": overrides.get("steps")}]
    return [load_preset(preset, trainer) if preset else {}, load_config_file(config_file) if config_file else {},
            overrides]


@adapt_app.command("text")
def adapt_text(
    out: Path = typer.Option(..., "--out", help="Run directory (created)."),
    generator: Optional[str] = typer.Option(None, help="Zoo name, checkpoint path or random:<size> spec."),
    source: Optional[str] = typer.Option(None, help="Text describing the generator's domain, e.g. 'Photo'."),
    target: Optional[str] = typer.Option(None, help="Text describing the new domain."),
    preset: Optional[str] = typer.Option(None, help="Official config preset, e.g. td_single_ffhq."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps."),
    batch: Optional[int] = typer.Option(None, help="Latents per step."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    betas: Optional[str] = typer.Option(None, help="Adam betas, e.g. 0.9,0.999."),
    weight_decay: Optional[float] = typer.Option(None, help="Adam weight decay."),
    mixing: Optional[float] = typer.Option(None, help="Style-mixing probability."),
    noise_mode: Optional[str] = typer.Option(None, help="random | const | none (shared by G_A and G_B)."),
    loss: Optional[list[str]] = typer.Option(None, help="NAME=COEF, repeatable: direction, global, indomain, offsets_l2, offsets_l1."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0' or random:tiny."),
    parameterization: Optional[str] = typer.Option(None, help="domain_vector, style_offset, full, or an ablation."),
    placement: Optional[str] = typer.Option(None, help="after_demod (official) | before_demod (paper figure)."),
    phase: Optional[str] = typer.Option(None, help="Layer group for full fine-tuning."),
    auto_layer_k: Optional[int] = typer.Option(None, help="Adaptive layer selection: layers kept (0 = off)."),
    auto_layer_iters: Optional[int] = typer.Option(None, help="Adaptive layer selection: W+ optimisation steps."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | fp16."),
    low_memory: Optional[bool] = typer.Option(None, "--low-memory/--no-low-memory",
                                              help="Recompute generator blocks in the backward pass; halve the micro-batch on out-of-memory."),
    clip_device: Optional[str] = typer.Option(None, help="Device of the CLIP encoders, e.g. cuda:1 (default: --device)."),
    micro_batch: Optional[int] = typer.Option(None, help="Render at most this many samples at a time (same gradient)."),
    log_every: Optional[int] = typer.Option(None, help="Steps between log lines."),
    save_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    grid_every: Optional[int] = typer.Option(None, help="Steps between preview grids."),
    grid_samples: Optional[int] = typer.Option(None, help="Samples per preview grid."),
    tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="Also log to TensorBoard."),
    wandb: Optional[bool] = typer.Option(None, "--wandb/--no-wandb", help="Also log to Weights & Biases."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Adapt a generator to a domain described in words (StyleGAN-NADA + indomain losses)."""
    from ..training.config import TextAdaptConfig, build_config
    from ..training.loop import run_training
    from ..training.text import TextTrainer

    overrides = dict(generator=generator, source=source, target=target, steps=steps, batch=batch, lr=lr,
                     betas=_parse_betas(betas), weight_decay=weight_decay, mixing=mixing, noise_mode=noise_mode,
                     losses=_parse_losses(loss), clip=clip, parameterization=parameterization,
                     placement=placement, phase=phase, auto_layer_k=auto_layer_k,
                     auto_layer_iters=auto_layer_iters, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every,
                     grid_samples=grid_samples, tensorboard=tensorboard, wandb=wandb, low_memory=low_memory,
                     clip_device=clip_device, micro_batch=micro_batch)
    cfg = build_config(TextAdaptConfig, *_run_settings(out, resume, preset, config, overrides, trainer="text"))
    result = run_training(TextTrainer(cfg), out, resume=resume, progress=progress)
    typer.echo(f"domain adapted to {cfg.target!r}: {result}")
