"""The ``hdn`` command. Every user error ends as one line on stderr and exit status 1."""
from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from . import __version__
from .errors import HDNError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Domain adaptation of StyleGAN2 with domain modulation and HyperDomainNet.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyperdomainnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """hdn: adapt StyleGAN2 generators to new domains by text or image."""


@app.command()
def models() -> None:
    """List the pretrained generators of the zoo and whether they are downloaded."""
    from . import zoo

    for entry in zoo.list_entries():
        cached = zoo.cached_path(entry.name)
        typer.echo(f"{entry.name:32s} {entry.arch.size:>5d} px  {entry.format:13s} "
                   f"{'downloaded' if cached else 'not downloaded'}  aliases: {', '.join(entry.aliases)}")


@app.command()
def download(names: list[str] = typer.Argument(..., help="Zoo names or aliases, e.g. ffhq church.")) -> None:
    """Download pretrained generators into the cache (HDN_HOME), verifying checksums."""
    from . import zoo

    for name in names:
        path = zoo.fetch(zoo.resolve(name).name)
        typer.echo(f"{name}: {path}")


@app.command()
def info(target: str = typer.Argument(..., help="Generator file, zoo name, random:<size> spec, or domain file."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Describe a generator checkpoint or a domain file (architecture, sizes, metadata)."""
    from .describe import describe_target

    report = describe_target(target)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)


def _print_report(report: dict[str, Any], indent: str = "") -> None:
    for key, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{indent}{key}:")
            _print_report(value, indent + "  ")
        else:
            typer.echo(f"{indent}{key}: {value}")


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: usage errors as click prints them (exit 2); user errors as one line (exit 1)."""
    try:
        app(args=argv)
    except HDNError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
