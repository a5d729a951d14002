"""Options several commands share, declared once (the training commands take theirs from their
config models, whose descriptions say the same)."""
from __future__ import annotations

from typing import Any

import typer

DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")
PRECISION = typer.Option("auto", "--precision",
                         help="auto (bf16 where the device computes it natively: AMX CPUs, CUDA capability >= 8.0; "
                              "else fp32) | fp32 | bf16 | fp16.")
TRUNCATION = typer.Option(1.0, "--truncation", help="Truncation ψ.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def batch_size(default: int = 16, help: str = "Images per forward pass.", **checks: Any) -> Any:
    """``--batch-size`` with a command's default and unit (``checks``: typer bounds such as min=1)."""
    return typer.Option(default, "--batch-size", help=help, **checks)


def force(help: str) -> Any:
    """``--force``, off by default; ``help`` says what it lets the command replace."""
    return typer.Option(False, "--force", show_default="off", help=help)
