"""``hdn info``: describe a generator, domain or hypernetwork, by file or name."""
from __future__ import annotations

import json
from typing import Any

import typer

from .app import app


@app.command()
def info(target: str = typer.Argument(..., help="Generator, domain or hypernetwork: a file, a zoo name (hdn models) "
                                             "or a random:<size> spec."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Describe a generator, a domain or a hypernetwork (architecture, sizes, metadata)."""
    from ..describe import describe_target

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
