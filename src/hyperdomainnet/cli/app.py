"""The ``hdn`` Typer application and its entry point. Every user error ends as one line on
stderr and exit status 1; usage errors are printed by click with exit status 2."""
from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from ..errors import HDNError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Domain adaptation of StyleGAN2 with domain modulation and HyperDomainNet.")
adapt_app = typer.Typer(no_args_is_help=True, help="Adapt a generator to a new domain.")
app.add_typer(adapt_app, name="adapt")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyperdomainnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """hdn: adapt StyleGAN2 generators to new domains by text or image."""


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

