"""``hdn models`` and ``hdn download``: the pretrained zoo."""
from __future__ import annotations

import typer

from .app import app


@app.command()
def models() -> None:
    """List the pretrained generators of the zoo and whether they are downloaded."""
    from .. import zoo

    for entry in zoo.list_entries():
        cached = zoo.cached_path(entry.name)
        typer.echo(f"{entry.name:32s} {entry.arch.size:>5d} px  {entry.format:13s} "
                   f"{'downloaded' if cached else 'not downloaded'}  aliases: {', '.join(entry.aliases)}")


@app.command()
def download(names: list[str] = typer.Argument(..., help="Zoo names or aliases, e.g. ffhq church.")) -> None:
    """Download pretrained generators into the cache (HDN_HOME), verifying checksums."""
    from .. import zoo

    for name in names:
        path = zoo.fetch(zoo.resolve(name).name)
        typer.echo(f"{name}: {path}")
