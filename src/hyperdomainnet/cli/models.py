"""``hdn models`` and ``hdn download``: the pretrained zoo."""
from __future__ import annotations

import typer

from ..errors import HDNError
from .app import app


@app.command()
def models() -> None:
    """List the zoo (generators, encoders, released domains and hypernetworks) and what is downloaded."""
    from .. import zoo

    for entry in zoo.list_entries():
        state = zoo.status(entry)
        if state == "corrupt":
            state = f"corrupt: delete {entry.path()} to download again"
        aliases = f"  aliases: {', '.join(entry.aliases)}" if entry.aliases else ""
        typer.echo(f"{entry.name:28s} {entry.kind:9s} {entry.arch.size:>5d} px  {state}{aliases}")


@app.command()
def download(names: list[str] = typer.Argument(..., help="Zoo names or aliases, e.g. ffhq church hdn-20.")) -> None:
    """Download (and for released models, convert) zoo entries into the cache (HDN_HOME), verifying checksums.

    Every name is tried; a summary follows, and the exit status is 1 if any failed.
    """
    from .. import zoo

    failed = []
    for name in names:
        try:
            typer.echo(f"{name}: {zoo.fetch(name)}")
        except HDNError as exc:
            typer.echo(f"error: {name}: {exc}", err=True)
            failed.append(name)
    if failed:
        if len(names) > 1:
            typer.echo(f"{len(names) - len(failed)} of {len(names)} downloaded; failed: {', '.join(failed)}",
                       err=True)
        raise typer.Exit(1)
