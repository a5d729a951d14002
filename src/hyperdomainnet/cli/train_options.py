"""Options and settings layers shared by the training commands (``hdn adapt text``, ``hdn adapt
image``, ``hdn hypernet train``). Every option defaults to None: unset options leave the preset's
or config file's value."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import HDNError

OUT = typer.Option(..., "--out", help="Run directory (created).")
GENERATOR = typer.Option(None, "--generator", help="Zoo name, checkpoint path or random:<size> spec.")
CONFIG = typer.Option(None, "--config", help="YAML file of settings.")
STEPS = typer.Option(None, "--steps", help="Optimisation steps.")
LR = typer.Option(None, "--lr", help="Adam learning rate.")
BETAS = typer.Option(None, "--betas", help="Adam betas, e.g. 0.9,0.999.")
WEIGHT_DECAY = typer.Option(None, "--weight-decay", help="Adam weight decay.")
MIXING = typer.Option(None, "--mixing", help="Style-mixing probability.")
NOISE_MODE = typer.Option(None, "--noise-mode", help="random | const | none.")
PARAMETERIZATION = typer.Option(None, "--parameterization", help="domain_vector | style_offset.")
PLACEMENT = typer.Option(None, "--placement", help="after_demod (official) | before_demod (paper figure).")
SEED = typer.Option(None, "--seed", help="Random seed.")
DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N.")
PRECISION = typer.Option(None, "--precision", help="auto (bf16 where native, else fp32) | fp32 | bf16 | fp16 (fp16 with loss scaling).")
LOW_MEMORY = typer.Option(None, "--low-memory/--no-low-memory",
                          help="Recompute generator blocks in the backward pass (less memory, more time).")
LOG_EVERY = typer.Option(None, "--log-every", help="Steps between log lines.")
SAVE_EVERY = typer.Option(None, "--save-every", help="Steps between checkpoints.")
GRID_EVERY = typer.Option(None, "--grid-every", help="Steps between preview grids.")
GRID_SAMPLES = typer.Option(None, "--grid-samples", help="Samples per preview row.")
TENSORBOARD = typer.Option(None, "--tensorboard/--no-tensorboard", help="Also log to TensorBoard.")
WANDB = typer.Option(None, "--wandb/--no-wandb", help="Also log to Weights & Biases.")
RESUME = typer.Option(False, "--resume", help="Continue the interrupted run in --out.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def parse_losses(items: Optional[list[str]]) -> Optional[dict[str, float]]:
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


def parse_betas(text: Optional[str]) -> Optional[tuple[float, float]]:
    """``"0.9,0.999"`` → (0.9, 0.999)."""
    if text is None:
        return None
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise HDNError(f"--betas {text!r}: give two numbers separated by a comma, e.g. 0.9,0.999") from None
    return b1, b2


def run_settings(out: Path, resume: bool, preset: Optional[str], config_file: Optional[Path],
                 overrides: dict[str, Any], trainer: Optional[str] = None) -> list[dict[str, Any]]:
    """Settings layers: preset, config file, command-line options; a resumed run uses its stored
    config (only --steps may change)."""
    from ..training.config import CONFIG_NAME, load_config_file, load_preset

    if resume:
        stored = out / CONFIG_NAME
        if not stored.is_file():
            raise HDNError(f"nothing to resume in {out}: {stored} does not exist")
        return [load_config_file(stored), {"steps": overrides.get("steps")}]
    return [load_preset(preset, trainer) if preset else {}, load_config_file(config_file) if config_file else {},
            overrides]
