"""Every option of `hdn generate`, `hdn prune` and `hdn eval` states its default in --help."""
from __future__ import annotations

import pytest
import typer

import hyperdomainnet.cli  # noqa: F401  (registers the commands)
from hyperdomainnet.cli.app import app


@pytest.mark.parametrize("name", ["generate", "prune", "eval"])
def test_help_shows_every_default(name):
    group = typer.main.get_command(app)
    command = group.commands[name]
    ctx = command.make_context(name, ["--help"], resilient_parsing=True)
    missing = []
    for param in command.params:
        if param.param_type_name != "option" or param.required or param.name == "help":
            continue
        record = param.get_help_record(ctx)
        if record is None or "[default:" not in record[1]:
            missing.append(param.name)
    assert not missing, f"--help of hdn {name} shows no default for {missing}"
