"""``hdn convert`` (official HyperDomainNet checkpoints → our files) and ``hdn export`` (→ rosinality .pt).

Both check the destination before any work: an existing file is replaced only with ``--force``,
and the output format must be the one the file name's extension says.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options
from .app import app

EXPORT_SUFFIXES: tuple[str, ...] = (".pt", ".pth")
CONVERT_SUFFIX = ".safetensors"
FORCE_HELP = "Replace an existing output file."


def _check_suffix(out: Path, suffixes: tuple[str, ...], what: str) -> None:
    """One-line ConfigError unless ``out`` ends with one of ``suffixes`` (the format follows the name)."""
    from ..errors import ConfigError

    if out.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {out}: {what} is written as {' or '.join(suffixes)}; "
                          f"give a file name ending in {suffixes[0]}")


@app.command()
def convert(checkpoint: Path = typer.Argument(..., help="Official HyperDomainNet checkpoint (.pt)."),
            out: Path = typer.Option(..., "--out", help="Output .safetensors file."),
            generator: Optional[str] = typer.Option(None, help="Generator it belongs to (default: from the file)."),
            force: bool = options.force(FORCE_HELP)) -> None:
    """Convert an official HyperDomainNet checkpoint: parameterisation → domain file, mapper → hypernetwork file."""
    from .. import zoo
    from ..atomic import check_output_file
    from ..convert import convert_official
    from ..loaders import load_generator

    _check_suffix(out, (CONVERT_SUFFIX,), "a converted checkpoint (domain or hypernetwork file)")
    check_output_file(out, force)
    G = load_generator(generator) if generator else None
    result = convert_official(checkpoint, out, generator=G, identify=zoo.generator_identity)
    typer.echo(f"converted {checkpoint} → {result}")


@app.command()
def export(generator: str = typer.Argument(..., help="Generator: .pt/.pkl file, zoo name or random:<size> spec."),
           out: Path = typer.Option(..., "--out", help="Output rosinality checkpoint (.pt)."),
           force: bool = options.force(FORCE_HELP)) -> None:
    """Write any loadable generator (e.g. an NVIDIA .pkl) as a rosinality-format .pt checkpoint."""
    from ..atomic import check_output_file
    from ..loaders import load_generator
    from ..stylegan2.formats.rosinality import write_rosinality

    _check_suffix(out, EXPORT_SUFFIXES, "an exported generator (a rosinality PyTorch checkpoint)")
    check_output_file(out, force)
    typer.echo(f"wrote {write_rosinality(load_generator(generator), out)}")
