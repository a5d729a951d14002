"""``hdn convert`` (official HyperDomainNet checkpoints → our files) and ``hdn export`` (→ rosinality .pt)."""
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
    from ..loaders import load_generator

    G = load_generator(generator) if generator else None
    typer.echo(f"converted {checkpoint} → {convert_official(checkpoint, out, generator=G)}")


@app.command()
def export(generator: str = typer.Argument(..., help="Generator: .pt/.pkl file, zoo name or random:<size> spec."),
           out: Path = typer.Option(..., "--out", help="Output rosinality .pt file.")) -> None:
    """Write any loadable generator (e.g. an NVIDIA .pkl) as a rosinality-format .pt checkpoint."""
    from ..stylegan2.formats.rosinality import write_rosinality
    from ..loaders import load_generator

    typer.echo(f"wrote {write_rosinality(load_generator(generator), out)}")
