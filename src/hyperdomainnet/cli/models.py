"""``hdn models`` and ``hdn download``: the pretrained zoo."""
from __future__ import annotations

from typing import Optional

import typer

from ..errors import ConfigError, HDNError
from .app import app

COLUMNS = f"{'NAME':28s} {'KIND':9s} {'PX':>5s} {'SIZE':>9s}  {'SHA-256':13s} STATUS"
LEGEND = ("SHA-256: published = an independent published hash, checked on download; own download = "
          "pinned from a download of ours; not pinned = accepted with a warning. SIZE: bytes where "
          "known. Released domains and hypernetworks come with the hyperdomainnet-checkpoints archive.")


def human_size(size: Optional[int]) -> str:
    """``381462551`` → ``381.5 MB``; unknown → ``?``."""
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


@app.command()
def models() -> None:
    """List the zoo (generators, encoders, released domains and hypernetworks): size, where each
    hash comes from, and what is downloaded."""
    from .. import zoo

    typer.echo(LEGEND)
    typer.echo(COLUMNS)
    for entry in zoo.list_entries():
        state = zoo.status(entry)
        if state == "corrupt":
            state = f"corrupt: delete {entry.path()} to download again"
        provenance = "converted" if entry.member else zoo.PROVENANCES[entry.sha256_provenance]
        size = "-" if entry.member else human_size(entry.size)
        aliases = f"  aliases: {', '.join(entry.aliases)}" if entry.aliases else ""
        px = "-" if entry.kind == "landmarks" else str(entry.resolution)  # a landmark model has no image size
        typer.echo(f"{entry.name:28s} {entry.kind:9s} {px:>5s} {size:>9s}  {provenance:13s} "
                   f"{state}{aliases}")


@app.command()
def download(names: Optional[list[str]] = typer.Argument(None, help="Zoo names or aliases, e.g. ffhq church hdn-20."),
             all_: bool = typer.Option(False, "--all", help="Every file of the zoo (sizes are listed first).")) -> None:
    """Download (and for released models, convert) zoo entries into the cache (HDN_HOME), verifying checksums.

    Every name is tried; a summary follows, and the exit status is 1 if any failed.
    """
    from .. import zoo
    from ..loaders import fetch

    if all_ == bool(names):
        raise ConfigError("give zoo names to download, or --all (not both); `hdn models` lists the names")
    if all_:
        files = [e for e in zoo.list_entries() if e.member is None]
        known = sum(e.size or 0 for e in files)
        for entry in files:
            typer.echo(f"{entry.name:28s} {human_size(entry.size):>9s}")
        unknown = sum(e.size is None for e in files)
        typer.echo(f"{len(files)} files, {human_size(known)}" + (f" + {unknown} of unknown size" if unknown else ""))
        names = [e.name for e in files] + [e.name for e in zoo.list_entries() if e.member]
    assert names is not None
    failed = []
    for name in names:
        try:
            typer.echo(f"{name}: {fetch(name)}")
        except HDNError as exc:
            typer.echo(f"error: {name}: {exc}", err=True)
            failed.append(name)
    if failed:
        if len(names) > 1:
            typer.echo(f"{len(names) - len(failed)} of {len(names)} downloaded; failed: {', '.join(failed)}",
                       err=True)
        raise typer.Exit(1)
