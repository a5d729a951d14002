"""--precision auto: resolution, recording, and how far bf16 autocast moves gradients and images."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.loaders import load_generator
from hyperdomainnet import device as device_settings
from hyperdomainnet.training.config import TextAdaptConfig
from hyperdomainnet.training.loop import run_training
from hyperdomainnet.device import autocast, resolve_precision
from hyperdomainnet.training.text import TextTrainer

from conftest import perturb

GEN = "random:64:channel_max=32:n_mlp=2"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


def trainer(clip: ClipEnsemble, precision: str, **changes) -> TextTrainer:
    settings = dict(generator=GEN, clip="random:tiny", target="Sketch", batch=2, lr=1e-6, device="cpu",
                    mixing=0.0, precision=precision, steps=1, grid_samples=2, losses={"direction": 1.0, "indomain": 1.0})
    cfg = TextAdaptConfig(**{**settings, **changes})
    t = TextTrainer(cfg, G=perturb(load_generator(GEN)), clip=clip)
    t.param.load_vector(torch.randn(t.G.domain_size, generator=torch.Generator().manual_seed(3)) * 0.2)
    return t


def test_auto_resolves_to_native_bf16_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: False)
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: True)
    assert resolve_precision("auto", CPU) == "bf16"
    with autocast(CPU, resolve_precision("auto", CPU)):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_precision_is_resolved_once_up_front() -> None:
    with pytest.raises(ValueError, match="resolved precision"):
        autocast(CPU, "auto")  # resolving is the caller's job, done once
    with pytest.raises(HDNError, match="fp16 autocast needs a CUDA device"):
        resolve_precision("fp16", CPU)  # refused where it is resolved, before any work


def test_run_records_the_resolved_precision(tmp_path: Path, clip: ClipEnsemble, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: True)
    t = trainer(clip, "auto", save_every=1, grid_every=1)
    result = run_training(t, tmp_path / "run", progress=False)
    assert capsys.readouterr().err.count("precision: bf16") == 1
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["precision"] == "bf16"
    assert Domain.load(result).metadata["config"]["precision"] == "bf16"


def test_the_trainer_resolves_a_copy_of_the_config(clip: ClipEnsemble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: True)
    cfg = TextAdaptConfig(generator=GEN, clip="random:tiny", target="Sketch", batch=2, device="cpu", steps=1)
    t = TextTrainer(cfg, G=load_generator(GEN), clip=clip)
    assert cfg.precision == "auto"  # the caller's config is left as given
    assert t.precision == t.config.precision == "bf16" and t.auto_precision
    assert not t.scaler.is_enabled()  # built from the resolved value: loss scaling is fp16's only


def test_bf16_gradients_and_images_stay_close_to_fp32(clip: ClipEnsemble) -> None:
    grads, images = [], []
    for precision in ("fp32", "bf16"):
        t = trainer(clip, precision)
        t.train_step(0)
        grads.append(torch.cat([p.grad.flatten() for p in t.param.layers]))
        ws = t.preview_ws
        with torch.no_grad(), autocast(CPU, precision):
            images.append(t.param.synthesize(t.G, ws).float())
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    # The generator's backward alone keeps cosine ≥ 0.999 (test_performance_paths); here the bf16
    # image (≈ 1.5% of its range off) also moves ∂loss/∂image, and the direction loss amplifies that
    # where b − a is small: ≈ 0.987 at this δ, ≈ 0.997 at δ 2.5 times as far from 0 (indomain alone: ≈ 0.9995).
    assert grads[0].abs().max() > 0 and cosine >= 0.98, float(cosine)
    assert not torch.equal(images[0], images[1])  # bf16 really ran
    assert (images[0] - images[1]).abs().mean() < 0.01 and (images[0] - images[1]).abs().max() < 0.1
