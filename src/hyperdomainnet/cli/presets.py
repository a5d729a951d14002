"""``hdn presets``: list the bundled presets; ``hdn presets show NAME``: every setting one runs with."""
from __future__ import annotations

import typer

from .app import app

presets_app = typer.Typer(help="List the bundled presets, or show one's settings.")
app.add_typer(presets_app, name="presets")


@presets_app.callback(invoke_without_command=True)
def list_presets(ctx: typer.Context) -> None:
    """List the presets: name, the command that takes it (--preset NAME), what it trains."""
    from ..training.config import PRESET_COMMANDS, preset_info, preset_names

    if ctx.invoked_subcommand is not None:
        return
    rows = [(name, *preset_info(name)) for name in preset_names()]
    width = max(len(name) for name, _, _ in rows)
    command_width = max(len(PRESET_COMMANDS[trainer]) for _, trainer, _ in rows)
    for name, trainer, description in rows:
        typer.echo(f"{name:<{width}}  {PRESET_COMMANDS[trainer]:<{command_width}}  {description}")


@presets_app.command("show")
def show(name: str = typer.Argument(..., help="Preset name (see `hdn presets`).")) -> None:
    """Print every setting of a preset, its values over the command's defaults, as YAML."""
    import yaml

    from ..training.config import resolve_preset

    typer.echo(yaml.safe_dump(resolve_preset(name), sort_keys=False), nl=False)
