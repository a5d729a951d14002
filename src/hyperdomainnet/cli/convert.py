"""``hdn convert``: official HyperDomainNet checkpoints → this project's files."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app


@app.command()
def convert(checkpoint: Path = typer.Argument(..., help="Official HyperDomainNet checkpoint (.pt)."),
            out: Path = typer.Option(..., "--out", help="Output .safetensors file."),
            generator: Optional[str] = typer.Option(None, help="Generator it belongs to (default: from the file).")) -> None:
    """Convert an official HyperDomainNet checkpoint: parameterisation → domain file, mapper → hypernetwork file."""
    from ..convert import convert_official
    from ..stylegan2.loading import load_generator

    G = load_generator(generator) if generator else None
    typer.echo(f"converted {checkpoint} → {convert_official(checkpoint, out, generator=G)}")
