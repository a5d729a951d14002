"""The whole path against a local mirror: every zoo file, in its released layout, served from 127.0.0.1.

Generators come through huggingface_hub pointed at the local server (as HF_ENDPOINT does), the
encoders and the released archive through HDN_MIRROR (an HTTP base URL). The registry is the
packaged one with each pinned size and SHA-256 replaced by the stand-in's (HDN_ZOO names the copy);
the download, verification, conversion and rendering code is the production code, untouched.
"""
from __future__ import annotations

import bz2
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from importlib import resources

from conftest import run_cli
from test_download import Served
from zoo_standins import CHANNELS, STYLE_DIM, standins

from hyperdomainnet import zoo
from hyperdomainnet.images import save_image

HF = "https://huggingface.co"
MIRROR = "/mirror"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return standins(tmp_path_factory.mktemp("standins"))


def pinned_registry(files: dict[str, bytes], folder: Path) -> Path:
    """The packaged registry with the stand-ins' sizes and digests pinned (provenance unchanged), and
    the tiny architecture they share."""
    data = yaml.safe_load(resources.files("hyperdomainnet").joinpath("data", "zoo.yaml").read_text())
    for raw in data["entries"]:
        if "member" in raw:
            continue
        body = files[raw["file_name"]]
        if raw["sha256"] is not None:
            raw["sha256"], raw["size"] = hashlib.sha256(body).hexdigest(), len(body)
        raw["arch"] = {**raw["arch"], "channel_max": CHANNELS, "style_dim": STYLE_DIM}
    path = folder / "zoo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def mirror(files: dict[str, bytes], server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Served:
    """Every zoo file served where the registry says (HF URLs) or under the mirror; a fresh cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(zoo.ENV_MIRROR, server.url + MIRROR)
    monkeypatch.setenv(zoo.ENV_REGISTRY, str(pinned_registry(files, tmp_path)))
    for entry in zoo.list_entries():
        if entry.member is None:
            hf = [u for u in entry.urls if u.startswith(HF)]
            body = files[entry.file_name]
            if hf and hf[0].endswith(".bz2"):  # served compressed, as published
                body = bz2.compress(body)
            server.add(hf[0][len(HF):] if hf else f"{MIRROR}/{entry.file_name}", body)
    return server


def _photo(folder: Path) -> Path:
    import torch

    gen = torch.Generator().manual_seed(0)
    return save_image(torch.rand(3, 64, 64, generator=gen) * 2 - 1, folder / "photo.png")


STYLIZE = ["--no-align", "--iterations", "1", "--device", "cpu", "--precision", "fp32", "--no-progress"]


def test_download_models_and_stylize_through_the_real_path(mirror: Served, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "download", "--all")
    assert code == 0, err
    assert re.search(r"stylegan2-ffhq-config-f +11\.\d MB", out)  # the sizes come first
    assert f"{len([e for e in zoo.list_entries() if e.member is None])} files" in out
    assert re.search(r"^td-pixar: .*released/td-pixar.safetensors$", out, re.M)
    assert re.search(r"^im2im-sketch: .*released/im2im-sketch.safetensors$", out, re.M)
    assert any(h.startswith("GET /akhaliq/OneshotCLIP-stylegan2-ffhq/resolve/") for h in mirror.hits)
    assert f"GET {MIRROR}/hyperdomainnet-checkpoints.zip" in mirror.hits

    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert re.search(r"stylegan2-ffhq-config-f +generator +1024 +11\.\d MB +published +downloaded", out)
    assert re.search(r"restyle-psp-ffhq +encoder +1024 +\? +not pinned +downloaded", out)
    assert re.search(r"td-ukiyo-e +domain +1024 +- +converted +downloaded", out)
    assert re.search(r"im2im-titan-erwin +domain +1024 +- +converted +downloaded", out)

    mirror.files.clear()  # from here on, only the cache
    photo = _photo(tmp_path)
    for name, args in {"text": ["--text", "3D render in the style of Pixar"],
                       "td": ["--domain", "td-pixar"],
                       "im2im": ["--domain", "im2im-sketch"],
                       "e4e": ["--domain", "td-sketch", "--encoder", "e4e-ffhq"]}.items():
        out_dir = tmp_path / name
        code, out, err = run_cli(capsys, "stylize", str(photo), *args, *STYLIZE, "--out", str(out_dir))
        assert code == 0, err
        assert (out_dir / "grid.png").is_file() and (out_dir / "photo-stylized.png").is_file()
        assert ("stylised + reference style" in out) == (name == "im2im"), out


def test_a_changed_byte_is_refused_by_its_hash(mirror: Served, files: dict[str, bytes],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    entry = zoo.resolve("church")
    path = entry.urls[0][len(HF):]
    tampered = bytearray(files[entry.file_name])
    tampered[len(tampered) // 2] ^= 1
    mirror.files[path] = bytes(tampered)
    code, _, err = run_cli(capsys, "download", "church")
    assert code == 1 and err.count("\n") == 1
    assert "checksum mismatch" in err and "set HDN_MIRROR" in err
    assert not entry.path().exists()
    assert not any(entry.path().parent.rglob("*.pt"))  # no half-written or unverified file in the cache
