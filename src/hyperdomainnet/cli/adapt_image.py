"""``hdn adapt image``: one-shot adaptation to the domain of a reference image (MindTheGap losses;
options: the fields of ImageAdaptConfig); several ``--image`` options train one domain each in one run."""
from __future__ import annotations

from pathlib import Path

import typer

from ..training.config import ImageAdaptConfig
from .app import adapt_app
from .train_options import training_command


@training_command(adapt_app, "image", ImageAdaptConfig, {"image": None})
def adapt_image(cfg: ImageAdaptConfig, out: Path, resume: bool, progress: bool) -> None:
    """Adapt a generator to the domain of a reference image (MindTheGap losses, official im2im_single);
    several --image options train one domain per image in one run."""
    from ..training.loop import run_training
    from ..training.image import ImageTrainer

    trainer = ImageTrainer(cfg, progress=progress)
    result = run_training(trainer, out, resume=resume, progress=progress)
    if cfg.images:
        typer.echo(f"domains adapted to {len(cfg.images)} reference images: {result}")
    else:
        typer.echo(f"domain adapted to the reference {trainer.reference.name}: {result}")
