"""Shared fixtures: tiny random generators whose zero-initialised parts are perturbed so tests bite."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from hyperdomainnet.cli import main  # noqa: E402
from hyperdomainnet import load_generator  # noqa: E402


@pytest.fixture(autouse=True)
def session_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cache (downloads, remembered digests) lives in the session's temporary folder, never in
    the user's; a test wanting its own sets HDN_HOME again."""
    monkeypatch.setenv("HDN_HOME", str(tmp_path_factory.getbasetemp() / "hdn-home"))


@pytest.fixture(autouse=True)
def auto_precision_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--precision auto`` resolves to fp32 in tests, whatever the CPU (AMX would give bf16), so the
    exactness tests compare fp32 with fp32; tests of bf16 ask for it or patch ``native_bf16`` back."""
    from hyperdomainnet import device as device_settings

    monkeypatch.setattr(device_settings, "native_bf16", lambda device: False)


@pytest.fixture
def server() -> Iterator[Any]:
    """A local HTTP server on 127.0.0.1 serving the files given to ``server.add(path, data)``."""
    from test_download import Served

    served = Served()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture
def without_faces_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as if the ``faces`` extra (face-alignment) were not installed, whether or not it is:
    nothing imports it and so nothing fetches its landmark model."""
    monkeypatch.setitem(sys.modules, "face_alignment", None)


def kill_run_at(trainer: Any, run_dir: Any, step: int = 3) -> None:
    """Run ``trainer`` in ``run_dir`` until step ``step`` dies as a killed process would
    (KeyboardInterrupt mid-step), leaving only what the run had checkpointed for --resume."""
    from hyperdomainnet.training.loop import run_training

    original = trainer.train_step

    def dies_at(current: int) -> Any:
        if current == step:
            raise KeyboardInterrupt
        return original(current)

    trainer.train_step = dies_at
    with pytest.raises(KeyboardInterrupt):
        run_training(trainer, run_dir, progress=False)


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
