"""The README's command blocks stay true: CI runs its test line, `hdn selftest` its quick start."""
from __future__ import annotations

import re
from pathlib import Path

from hyperdomainnet.cli import selftest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def bash_block(after: str) -> list[str]:
    """The lines of the first ```bash block after the heading or sentence ``after``."""
    block = README.read_text(encoding="utf-8").split(after, 1)[1].split("```bash\n", 1)[1]
    return block.split("```", 1)[0].splitlines()


def test_the_readme_test_line_is_the_one_ci_runs() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert bash_block("Run the tests") == [ci_lines[-1]]


def test_the_steps_follow_the_readme_quick_start() -> None:
    commands = [line for line in bash_block("## Offline / CPU quick start") if line.startswith("hdn ")]
    names = [step.name for step in selftest.quick_start()]
    assert len(commands) == len(names)
    for command, name in zip(commands, names):
        assert re.match(rf"hdn {name}( |$)", command), (command, name)
