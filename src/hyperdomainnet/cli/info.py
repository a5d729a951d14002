"""``hdn info``: describe a checkpoint, spec or domain file."""
from __future__ import annotations

import json
from typing import Any

import typer

from .app import app


@app.command()
def info(target: str = typer.Argument(..., help="Generator file, zoo name, random:<size> spec, or domain file."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Describe a generator checkpoint or a domain file (architecture, sizes, metadata)."""
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
