"""Offline tests of the pretrained-generator registry and its cached fetch."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import urllib.parse
import warnings
from pathlib import Path

import pytest

from hyperdomainnet import download, paths, zoo
from hyperdomainnet.download import UnverifiedDownloadWarning, record_path
from hyperdomainnet.errors import HDNError
from hyperdomainnet.stylegan2.generator import Generator, GeneratorArch
from hyperdomainnet.zoo import ZooEntry

# Domain-vector sizes of config-f generators (channel_multiplier 2), from the paper / DESIGN §2.
DOMAIN_DIM = {256: 5760, 512: 5952, 1024: 6048}
SHORT_ALIASES = {
    "ffhq": "stylegan2-ffhq-config-f",
    "afhq-cat": "stylegan2-afhqcat-512x512",
    "afhq-dog": "stylegan2-ada-afhqdog",
    "car": "stylegan2-car-config-f",
    "cat": "stylegan2-cat-config-f",
    "church": "stylegan2-church-config-f",
    "horse": "stylegan2-horse-config-f",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own HDN_HOME, and no socket may leave the machine."""
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    real = socket.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        if address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)


def rosinality_c_in(size: int, channel_multiplier: int) -> list[int]:
    """c_in of every 3×3 modulated conv, from rosinality's channel table (independent of zoo)."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
          128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
          512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    out = [ch[4]]  # conv1 at 4 px
    res = 8
    while res <= size:
        out += [ch[res // 2], ch[res]]  # up-sampling conv, then conv
        res *= 2
    return out


# ----------------------------------------------------------------------------------------------
# the registry


def test_entries_are_well_formed() -> None:
    entries = zoo.list_entries()
    assert len(entries) == 7
    assert len({e.name for e in entries}) == len(entries)
    assert len({e.file_name for e in entries}) == len(entries)
    for e in entries:
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.sha256_source.strip(), e.name
        assert isinstance(e.sha256_verified, bool)
        if e.sha256 is None:
            assert not e.sha256_verified, e.name
        assert e.size_bytes is None or (isinstance(e.size_bytes, int) and e.size_bytes > 1 << 20)
        assert e.urls and len(set(e.urls)) == len(e.urls), e.name
        for url in e.urls:
            parsed = urllib.parse.urlsplit(url)
            assert parsed.scheme == "https" and parsed.netloc, url
            assert " " not in url
        assert e.format in zoo.FORMATS
        assert e.file_name.endswith(".pt" if e.format == "rosinality-pt" else ".pkl")
        assert "/" not in e.file_name and "\\" not in e.file_name
        assert e.source and e.license and e.dataset and e.description


def test_architectures_match_domain_sizes() -> None:
    for e in zoo.list_entries():
        a = e.arch
        assert a.size in DOMAIN_DIM, e.name
        assert a.channel_multiplier == 2 and a.n_mlp == 8 and a.style_dim == 512, e.name
        expected = rosinality_c_in(a.size, a.channel_multiplier)
        assert a.domain_layout() == expected, e.name
        assert sum(a.domain_layout()) == DOMAIN_DIM[a.size], e.name
        assert len(expected) == a.n_latent - 1  # one conv per W+ entry except the last toRGB


def test_known_resolutions() -> None:
    sizes = {e.name: e.arch.size for e in zoo.list_entries()}
    assert sizes == {
        "stylegan2-ffhq-config-f": 1024,
        "stylegan2-afhqcat-512x512": 512,
        "stylegan2-ada-afhqdog": 512,
        "stylegan2-car-config-f": 512,
        "stylegan2-cat-config-f": 256,
        "stylegan2-church-config-f": 256,
        "stylegan2-horse-config-f": 256,
    }


def test_domain_dim_at_1024_matches_design_listing() -> None:
    assert GeneratorArch(1024).domain_layout() == [512] * 10 + [256, 256, 128, 128, 64, 64, 32]
    small = GeneratorArch(64, channel_max=32, n_mlp=2)
    assert small.domain_layout() == Generator(64, channel_max=32, n_mlp=2).domain_layout
    with pytest.raises(ValueError):
        GeneratorArch(300)


@pytest.mark.parametrize(("alias", "name"), sorted(SHORT_ALIASES.items()))
def test_aliases_resolve(alias: str, name: str) -> None:
    assert zoo.resolve(alias).name == name
    assert zoo.resolve(alias.upper()).name == name
    assert zoo.resolve(f"  {alias.replace('-', '_')} ").name == name


def test_names_and_file_names_resolve() -> None:
    for e in zoo.list_entries():
        assert zoo.resolve(e.name) is e
        assert zoo.resolve(e.file_name) is e
        assert zoo.resolve(e) is e
    assert zoo.names() == [e.name for e in zoo.list_entries()]


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(HDNError) as err:
        zoo.resolve("stylegan2-wikiart")
    msg = str(err.value)
    assert "stylegan2-wikiart" in msg and "\n" not in msg
    for e in zoo.list_entries():
        assert e.name in msg


def test_paths_follow_hdn_home(tmp_path: Path) -> None:
    e = zoo.resolve("ffhq")
    assert zoo.model_path("ffhq") == (tmp_path / "hdn" / "models" / e.file_name).resolve()
    assert zoo.cached_path("ffhq") is None  # nothing downloaded, and no network used


# ----------------------------------------------------------------------------------------------
# fetch, against file:// mirrors


def _local_entry(tmp_path: Path, data: bytes, sha256: str | None, *, urls: list[str] | None = None,
                 size: int | None = None) -> ZooEntry:
    src = tmp_path / "mirror" / "tiny.pt"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    base = zoo.resolve("church")
    return dataclasses.replace(base, name="tiny-test-generator", file_name="tiny.pt",
                               urls=tuple(urls or [src.as_uri()]), sha256=sha256,
                               size_bytes=size, sha256_verified=sha256 is not None)


def test_fetch_downloads_once_then_uses_cache(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    entry = _local_entry(tmp_path, data, sha, size=len(data))
    path = zoo.fetch(entry, progress=False)
    assert path == paths.models_dir() / "tiny.pt"
    assert path.read_bytes() == data
    assert zoo.cached_path(entry) == path

    (tmp_path / "mirror" / "tiny.pt").unlink()  # the mirror is gone: the cache must suffice
    assert zoo.fetch(entry, progress=False) == path


def test_fetch_falls_back_to_second_mirror(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/tiny.pt"
    s.close()
    entry = _local_entry(tmp_path, data, sha)
    entry = dataclasses.replace(entry, urls=(dead, *entry.urls))
    assert zoo.fetch(entry, progress=False).read_bytes() == data


def test_fetch_never_overwrites_a_mismatching_file(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    entry = _local_entry(tmp_path, data, hashlib.sha256(data).hexdigest())
    dest = paths.models_dir() / "tiny.pt"
    dest.write_bytes(b"my own fine-tuned generator")
    with pytest.raises(HDNError, match="does not match tiny-test-generator"):
        zoo.fetch(entry, progress=False)
    assert dest.read_bytes() == b"my own fine-tuned generator"
    assert zoo.cached_path(entry) is None


def test_fetch_unverified_entry_warns_once(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    entry = _local_entry(tmp_path, data, None)
    with pytest.warns(UnverifiedDownloadWarning, match=sha):
        path = zoo.fetch(entry, progress=False)
    assert record_path(path).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zoo.fetch(entry, progress=False) == path
    assert zoo.cached_path(entry) == path


def test_fetch_failure_names_the_manual_route(tmp_path: Path) -> None:
    entry = _local_entry(tmp_path, b"x", None)
    missing = (tmp_path / "mirror" / "absent.pt").as_uri()
    entry = dataclasses.replace(entry, urls=(missing,))
    with pytest.raises(HDNError) as err:
        zoo.fetch(entry, progress=False)
    msg = str(err.value)
    assert msg.startswith("could not download tiny-test-generator (")
    assert f"download it yourself from {missing} and place it at " in msg
    assert str(paths.models_dir() / "tiny.pt") in msg and "\n" not in msg
