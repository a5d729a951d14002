"""Warnings reach the user as clean one-line ``warning:`` messages: Python warnings without source
paths, and library log records (open_clip logs errors through the root logger) without ``ERROR:root:``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from hyperdomainnet.cli.console import MAX_CHARS
from hyperdomainnet.images import save_image


SNIPPET = """
import logging, warnings
from hyperdomainnet.cli.console import warnings_as_lines
handlers, show = logging.getLogger().handlers[:], warnings.showwarning
with warnings_as_lines():
    warnings.warn("photo.png is only 64×64 px;\\n  upscaling", UserWarning)
    logging.error("Failed to download weights for tag 'openai': %s", "x" * 400)
    logging.getLogger("open_clip").warning("No pretrained weights loaded")
    logging.error("Failed to download weights for tag 'openai': %s", "x" * 400)  # once
    logging.getLogger("hyperdomainnet.inversion").info("computing P-norm statistics")  # info stays quiet
assert logging.getLogger().handlers == handlers and warnings.showwarning is show  # restored
"""


def test_python_warnings_and_root_log_records_print_once_as_warning_lines() -> None:
    """In a fresh process, as a command runs (this test process's libraries may have reconfigured
    logging): every warning and log record ≥ WARNING once, as one ``warning:`` line."""
    done = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "warning: photo.png is only 64×64 px; upscaling"
    assert lines[1].startswith("warning: Failed to download weights for tag 'openai': xxx")
    assert len(lines[1]) == len("warning: ") + MAX_CHARS and lines[1].endswith("…")
    assert lines[2:] == ["warning: No pretrained weights loaded"]


def test_a_command_s_warning_is_one_line_without_a_source_path(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    save_image(torch.zeros(3, 16, 16), tmp_path / "small.png")
    code, _, err = run_cli(capsys, "adapt", "image", "--generator", "random:32:channel_max=16:n_mlp=2", "--clip",
                           "random:tiny", "--image", str(tmp_path / "small.png"), "--steps", "1", "--batch", "2",
                           "--invert-steps", "1", "--lpips-random-backbone", "--pnorm-samples", "64", "--device",
                           "cpu", "--no-progress", "--out", str(tmp_path / "run"), )
    assert code == 0, err
    warned = [line for line in err.splitlines() if "upscaling" in line]
    assert warned == ["warning: small.png is only 16×16 px; upscaling to 32×32 will look soft — use a larger "
                      "image for better results"]
    assert ".py:" not in err and "UserWarning" not in err
