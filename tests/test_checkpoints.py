"""rosinality .pt reading/writing, architecture inference, random specs and bad files."""
from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch

from hyperdomainnet import load_generator
from hyperdomainnet.errors import HDNError
from hyperdomainnet.stylegan2 import Generator
from hyperdomainnet.stylegan2.formats.rosinality import read_rosinality, write_rosinality

from conftest import perturb

ROSINALITY_KEYS_16PX = {
    "style.1.weight", "style.1.bias", "style.2.weight", "style.2.bias", "input.input",
    "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
    "conv1.noise.weight", "conv1.activate.bias",
    "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight", "to_rgb1.conv.modulation.bias", "to_rgb1.bias",
    *(f"convs.{i}.{p}" for i in range(4) for p in (
        "conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")),
    "convs.0.conv.blur.kernel", "convs.2.conv.blur.kernel",
    *(f"to_rgbs.{k}.{p}" for k in range(2) for p in (
        "conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias", "upsample.kernel")),
    *(f"noises.noise_{i}" for i in range(5)),
}


def render(G: Generator, seed: int = 0) -> torch.Tensor:
    z = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(seed))
    return G.synthesis(G.ws(z, truncation=0.7), noise_mode="const")


def test_state_dict_has_rosinality_layout() -> None:
    G = Generator(16, n_mlp=2, channel_max=8)
    keys = set(G.state_dict()) - {"latent_avg"}
    assert keys == ROSINALITY_KEYS_16PX
    assert G.state_dict()["conv1.conv.weight"].shape == (1, 8, 8, 3, 3)
    assert G.state_dict()["to_rgb1.conv.weight"].shape == (1, 3, 8, 1, 1)
    assert G.state_dict()["noises.noise_3"].shape == (1, 1, 16, 16)


def test_round_trip_through_rosinality_file(tmp_path: Path, tiny_G: Generator) -> None:
    path = write_rosinality(tiny_G, tmp_path / "g.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "latent_avg", "hdn_arch"}
    G2 = load_generator(path)
    torch.testing.assert_close(render(G2), render(tiny_G), atol=0, rtol=0)
    assert G2.identity["sha256"] and len(G2.identity["sha256"]) == 64


@pytest.mark.parametrize("size,cm,cmax,n_mlp", [(64, 2, 512, 8), (128, 1, 512, 2), (32, 1, 16, 3), (256, 2, 64, 1)])
def test_architecture_inferred_from_plain_rosinality_file(tmp_path: Path, size: int, cm: int, cmax: int,
                                                          n_mlp: int) -> None:
    torch.manual_seed(0)
    G = perturb(Generator(size, n_mlp=n_mlp, channel_multiplier=cm, channel_max=cmax))
    state = {k: v for k, v in G.state_dict().items() if k != "latent_avg"}
    latent_avg = torch.randn(1, 512)
    # As rosinality's train.py writes it: extra entries and an argparse.Namespace.
    torch.save({"g_ema": state, "latent_avg": latent_avg, "g_optim": {"state": {}},
                "args": argparse.Namespace(size=size)}, tmp_path / "ckpt.pt")
    ckpt = read_rosinality(tmp_path / "ckpt.pt")
    assert (ckpt.arch.size, ckpt.arch.n_mlp) == (size, n_mlp)
    assert all(ckpt.arch.channels(2**r) == G.arch.channels(2**r) for r in range(2, G.arch.log_size + 1))
    loaded = load_generator(tmp_path / "ckpt.pt")
    torch.testing.assert_close(loaded.mean_latent(), latent_avg[0])
    torch.testing.assert_close(render(loaded), render(_with_avg(G, latent_avg[0])))


def _with_avg(G: Generator, avg: torch.Tensor) -> Generator:
    G.latent_avg.copy_(avg)
    return G


def test_bare_state_dict_file_loads(tmp_path: Path, tiny_G: Generator) -> None:
    torch.save({k: v for k, v in tiny_G.state_dict().items() if k != "latent_avg"}, tmp_path / "sd.pt")
    G = load_generator(tmp_path / "sd.pt")
    assert G.size == 32 and G.domain_layout == tiny_G.domain_layout


def test_random_spec_is_deterministic() -> None:
    a = load_generator("random:16:channel_max=8:n_mlp=2")
    b = load_generator("random:16:n_mlp=2:channel_max=8")
    c = load_generator("random:16:channel_max=8:n_mlp=2:seed=5")
    assert a.identity["name"] == b.identity["name"] == "random:16:channel_max=8:n_mlp=2"
    assert c.identity["name"] == "random:16:channel_max=8:n_mlp=2:seed=5"
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.conv1.conv.weight, c.conv1.conv.weight)
    assert not any(p.requires_grad for p in a.parameters()) and not a.training


@pytest.mark.parametrize("spec,message", [
    ("random:63", "power of two"),
    ("random:64:channels=3", "unknown option"),
    ("random:abc", "invalid generator spec"),
    ("no-such-model-or-file", "not an existing file"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(HDNError, match=message):
        load_generator(spec)


class _Payload:
    def __reduce__(self):  # pragma: no cover - must never run
        return (os.system, ("echo pwned > /tmp/hdn_pwned",))


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"model": torch.zeros(3), "step": torch.tensor(1)}, tmp_path / "other.pt")
    good = tmp_path / "good.pt"
    write_rosinality(Generator(8, n_mlp=1, channel_max=4), good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"g_ema": {"x": torch.zeros(1)}, "p": _Payload()}, tmp_path / "evil.pt")
    cases = {"empty.pt": "empty", "other.pt": "keys model, step", "truncated.pt": "not a readable",
             "text.pt": "is a text file, not a PyTorch checkpoint", "evil.pt": "cannot be loaded safely"}
    for name, message in cases.items():
        with pytest.raises(HDNError, match=message) as info:
            load_generator(tmp_path / name)
        assert "\n" not in str(info.value)
    assert not Path("/tmp/hdn_pwned").exists()
    with pytest.raises(HDNError, match="directory"):
        load_generator(tmp_path)


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "g.pt"
    target.write_bytes(b"previous")

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        write_rosinality(Generator(8, n_mlp=1, channel_max=4), target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]


def test_pickle_protocol_file_is_not_unpickled_plainly(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Payload()}))
    with pytest.raises(HDNError):
        load_generator(path)
    assert not Path("/tmp/hdn_pwned").exists()


def test_truncated_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    good = write_rosinality(Generator(8, n_mlp=1, channel_max=4), tmp_path / "good.pt")
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    # Cut inside the zip header, the pickle, and (past 4 KiB, where PyTorch's zip reader raises
    # "OSError: Invalid argument") the tensor data.
    for length in (2, 30, 300, 4099, 6000, len(data) // 2, len(data) - 10):
        cut.write_bytes(data[:length])
        with pytest.raises(HDNError) as info:
            load_generator(cut)
        assert "\n" not in str(info.value), length


def test_legacy_pytorch_format_checkpoint_loads(tmp_path: Path, tiny_G: Generator) -> None:
    state = {k: v for k, v in tiny_G.state_dict().items() if k != "latent_avg"}
    torch.save({"g_ema": state, "latent_avg": tiny_G.mean_latent()}, tmp_path / "legacy.pt",
               _use_new_zipfile_serialization=False)
    G = load_generator(tmp_path / "legacy.pt")
    torch.testing.assert_close(render(G), render(tiny_G), atol=0, rtol=0)
    assert G.identity["name"] == "legacy.pt" and len(G.identity["sha256"]) == 64


def test_checkpoint_hash_is_remembered_not_recomputed(tmp_path: Path, tiny_G: Generator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    path = write_rosinality(tiny_G, tmp_path / "g.pt")
    first = load_generator(path).identity["sha256"]
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(hashlib, "sha256", no_hashing)
    assert load_generator(path).identity["sha256"] == first
