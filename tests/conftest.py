"""Shared fixtures: tiny random generators whose zero-initialised parts are perturbed so tests bite."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from hyperdomainnet.cli import main  # noqa: E402
from hyperdomainnet import load_generator  # noqa: E402


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``hdn argv…`` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def perturb(G: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give noise strengths and biases (zero at init) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight") or name.endswith("activate.bias") or (
                    "to_rgb" in name and name.endswith(".bias")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return G


@pytest.fixture
def tiny_G() -> torch.nn.Module:
    """32 px, 16 channels, 2 mapping layers, with non-zero noise strengths and biases."""
    return perturb(load_generator("random:32:channel_max=16:n_mlp=2"))
