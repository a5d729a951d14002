"""``hdn adapt text``: text-driven adaptation (options: the fields of TextAdaptConfig); several
``--target`` options (or ``--targets FILE``) train one domain each in one run."""
from __future__ import annotations

from pathlib import Path

import typer

from ..training.config import TextAdaptConfig
from .app import adapt_app
from .train_options import training_command


@training_command(adapt_app, "text", TextAdaptConfig, {"text": None})
def adapt_text(cfg: TextAdaptConfig, out: Path, resume: bool, progress: bool) -> None:
    """Adapt a generator to domains described in words (StyleGAN-NADA + indomain losses)."""
    from ..training.loop import run_training
    from ..training.text import TextTrainer

    result = run_training(TextTrainer(cfg), out, resume=resume, progress=progress)
    if cfg.targets:
        typer.echo(f"domains adapted to {len(cfg.targets)} targets: {result}")
    else:
        typer.echo(f"domain adapted to {cfg.target!r}: {result}")
