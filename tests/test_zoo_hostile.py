"""Bad-input corpus of the zoo: mirror answers, hostile archives, corrupt side files and caches,
forged hash records. Each ends in one line (or a rebuilt cache), never a traceback or a wrong file."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from test_download import Served
from test_zoo import released_archive, use_entries

from hyperdomainnet import zoo
from hyperdomainnet.errors import DownloadError, FileFormatError
from hyperdomainnet.hashing import file_identity_sha256, record_path, remember_sha256
from hyperdomainnet.loaders import fetch, load_generator
from hyperdomainnet.released import convert_archive
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    monkeypatch.delenv(zoo.ENV_MIRROR, raising=False)


def pinned(server: Served, data: bytes, name: str = "tiny-generator") -> zoo.ZooEntry:
    """A generator entry pinned to ``data``, whose only published URL answers 404."""
    return dataclasses.replace(zoo.resolve("church"), name=name, file_name=f"{name}.pt", aliases=(),
                               urls=(server.url + f"/gone/{name}.pt",), sha256=hashlib.sha256(data).hexdigest(),
                               size=len(data))


# ----- mirror answers ---------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "reason"), [
    (b"<!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>", "served an HTML page"),
    (b"published bytes plus more", "wrong size: got 25 bytes, expected 15"),
    (b"publisHed bytes", "checksum mismatch"),
])
def test_a_bad_mirror_answer_is_refused_and_every_try_listed(answer: bytes, reason: str, server: Served,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = pinned(server, b"published bytes")
    use_entries(monkeypatch, entry)
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / entry.file_name).write_bytes(answer)
    monkeypatch.setenv(zoo.ENV_MIRROR, str(folder))  # a folder holding the zoo's file names
    with pytest.raises(DownloadError) as info:
        fetch(entry.name)
    message = str(info.value)
    assert "\n" not in message and reason in message
    assert f"{folder / entry.file_name}: " in message and "127.0.0.1" in message  # both tries, in order
    assert message.index(str(folder)) < message.index("127.0.0.1")
    assert "set HDN_MIRROR to a folder or URL holding tiny-generator.pt" in message
    assert not entry.path().parent.exists() or not any(entry.path().parent.iterdir())


def test_a_mirror_serves_what_the_sources_do_not(server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = pinned(server, b"published bytes")
    use_entries(monkeypatch, entry)
    server.add(f"/org-mirror/{entry.file_name}", b"published bytes")
    monkeypatch.setenv(zoo.ENV_MIRROR, server.url + "/org-mirror/")
    assert fetch(entry.name).read_bytes() == b"published bytes"
    assert server.hits == [f"GET /org-mirror/{entry.file_name}"]


# ----- hostile archives -------------------------------------------------------------------------
def _stored_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _claim_size(data: bytes, member: bytes, size: int, both: bool = True) -> bytes:
    """The zip with ``member``'s uncompressed size (and, if ``both``, its compressed size) set to
    ``size`` in its local header and its central-directory entry."""
    out = bytearray(data)
    # (signature, offset of the compressed size, of the name length, of the name) per record kind
    for sig, sizes_at, name_len_at, name_at in ((b"PK\x03\x04", 18, 26, 30), (b"PK\x01\x02", 20, 28, 46)):
        at = out.find(sig)
        while at >= 0:
            n = struct.unpack_from("<H", out, at + name_len_at)[0]
            if bytes(out[at + name_at:at + name_at + n]) == member:
                if both:
                    struct.pack_into("<I", out, at + sizes_at, size)
                struct.pack_into("<I", out, at + sizes_at + 4, size)
            at = out.find(sig, at + 4)
    return bytes(out)


def _archive_with(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    return path


def test_a_truncated_archive_is_one_line(tmp_path: Path) -> None:
    data, _ = released_archive(tmp_path)
    archive = _archive_with(tmp_path, data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="is not a readable zip archive .*delete it to download again") as info:
        convert_archive(archive, tmp_path / "out" / "manifest.json", {}, lambda name: None)
    assert "\n" not in str(info.value) and not (tmp_path / "out" / "manifest.json").exists()


def test_a_member_larger_than_its_entry_claims_is_refused(tmp_path: Path) -> None:
    data, _ = released_archive(tmp_path)
    with zipfile.ZipFile(_archive_with(tmp_path, data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    target = "checkpoints/td_checkpoints/td_ukiyo-e.pt"
    lying = _claim_size(_stored_zip(members), target.encode(), 100)  # holds far more than 100 bytes
    with pytest.raises(FileFormatError, match=f"is corrupt at member {target} .*delete it") as info:
        convert_archive(_archive_with(tmp_path, lying), tmp_path / "out" / "manifest.json", {}, lambda n: None)
    assert "\n" not in str(info.value)
    huge = _claim_size(_stored_zip(members), target.encode(), 0xFFFF_FFF0, both=False)  # a bomb's claim
    with pytest.raises(FileFormatError, match="claims 4,294,967,280 bytes"):
        convert_archive(_archive_with(tmp_path, huge), tmp_path / "out" / "manifest.json", {}, lambda n: None)


def test_member_paths_never_leave_the_conversion_folder(tmp_path: Path) -> None:
    data, _ = released_archive(tmp_path)
    with zipfile.ZipFile(_archive_with(tmp_path, data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    payload = members["checkpoints/td_checkpoints/td_ukiyo-e.pt"]
    evil = {**members, "../x": b"escaped", "../td_checkpoints/td_evil.pt": payload,
            "/abs/td_checkpoints/td_abs.pt": payload, "../../mapper_20_td.pt": payload}
    out = tmp_path / "deep" / "out"
    with pytest.warns(UserWarning):
        converted = convert_archive(_archive_with(tmp_path, _stored_zip(evil)), out / "manifest.json",
                                    {}, lambda name: None)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.startswith("deep/out/") or p in ("archive.zip", "one.pt", "src.zip") for p in written), written
    assert {"td-evil", "td-abs"} <= {m["name"] for m in converted}  # converted under their base names only
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()


# ----- corrupt side files and caches (issue: corrupt side files crash) ---------------------------
def test_a_hash_record_holding_a_list_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    record = record_path(path, create=True)
    record.write_text("[]")
    assert file_identity_sha256(path) == hashlib.sha256(b"weights").hexdigest()
    assert json.loads(record.read_text())["sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_a_corrupt_manifest_is_rebuilt(server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = released_archive(tmp_path)
    url = server.add("/checkpoints.zip", data)
    use_entries(monkeypatch, dataclasses.replace(zoo.resolve(zoo.ARCHIVE), urls=(url,)))
    with pytest.warns(UserWarning):
        fetch("td-ukiyo-e")
    for junk in ("{not json", "[]x", '{"a": 1}', '[{"name": 3}]'):
        zoo.manifest_path().write_text(junk)
        assert "td-ukiyo-e" in {e.name for e in zoo.list_entries()}  # the registry still answers
        assert zoo.status("td-ukiyo-e") == "downloaded"
        with pytest.warns(UserWarning, match="skipped .*td_broken"):  # converted again: the manifest is a cache
            assert fetch("hdn-20").is_file()
        assert zoo.read_manifest() is not None and fetch("td-unlisted").is_file()


def test_a_wrong_shape_statistics_cache_is_recomputed(tiny_G: torch.nn.Module) -> None:
    from hyperdomainnet import fileformat, inversion

    path, mapping_sha = inversion._pnorm_path(tiny_G, 64, 0)
    fileformat.save(path, {"mean": torch.zeros(3), "components": torch.zeros(3, 3), "std": torch.ones(3)},
                    {"mapping_sha256": mapping_sha}, file_format=inversion.PNORM_FORMAT,
                    version=inversion.PNORM_VERSION)
    with pytest.warns(UserWarning, match=f"ignoring unreadable P-norm cache {path} .*mean has shape"):
        stats = inversion.pnorm_stats(tiny_G, 64, 0)
    assert stats.components.shape == (tiny_G.style_dim, tiny_G.style_dim)
    assert inversion.pnorm_stats(tiny_G, 64, 0).mean.shape == (tiny_G.style_dim,)  # the rewritten cache


def test_a_wrong_shape_latent_cache_is_inverted_again(tiny_G: torch.nn.Module, tmp_path: Path) -> None:
    from hyperdomainnet import fileformat, inversion
    from hyperdomainnet.images import save_image

    image = save_image(torch.zeros(3, 32, 32), tmp_path / "ref.png")
    kwargs = dict(steps=1, lpips_random_backbone=True, pnorm_samples=256, progress=False)
    inversion.cached_invert(tiny_G, image, **kwargs)
    [cached] = (tmp_path / "hdn" / "latents").glob("ref-*.safetensors")
    tensors, meta = fileformat.load(cached, file_format=inversion.LATENT_FORMAT, max_version=inversion.LATENT_VERSION,
                                    what="latent cache file")
    fileformat.save(cached, {**tensors, "latent": torch.zeros(1, 3, 5)}, meta, file_format=inversion.LATENT_FORMAT,
                    version=inversion.LATENT_VERSION)
    with pytest.warns(UserWarning, match=f"ignoring unreadable latent cache {cached} .*latent has shape"):
        result = inversion.cached_invert(tiny_G, image, **kwargs)
    assert not result.cached and result.latent.shape == (1, tiny_G.n_latent, tiny_G.style_dim)


# ----- forged hash records (issue: a forged sidecar made a substituted file pass) ---------------
def test_a_forged_record_cannot_vouch_for_a_substituted_file(server: Served, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    G = load_generator("random:8:channel_max=4:n_mlp=1")
    genuine = write_rosinality(G, tmp_path / "genuine.pt").read_bytes()
    entry = pinned(server, genuine, "church-like")
    use_entries(monkeypatch, entry)
    entry.path().parent.mkdir(parents=True)
    entry.path().write_bytes(genuine)
    assert zoo.status(entry.name) == "downloaded"
    record = json.loads(record_path(entry.path()).read_text())
    stamp = entry.path().stat()

    impostor = write_rosinality(load_generator("random:8:channel_max=4:n_mlp=1:seed=9"), tmp_path / "i.pt")
    impostor_bytes = impostor.read_bytes()[:len(genuine)].ljust(len(genuine), b"\0")
    tmp = entry.path().with_name("swap")
    tmp.write_bytes(impostor_bytes)
    os.replace(tmp, entry.path())  # substituted: same size, same mtime, new inode
    os.utime(entry.path(), ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    sidecar = entry.path().with_name(entry.path().name + ".sha256.json")  # the old side file, forged
    sidecar.write_text(json.dumps({"sha256": entry.sha256, "size": stamp.st_size, "mtime_ns": stamp.st_mtime_ns}))
    assert zoo.status(entry.name) == "corrupt"

    # a record forged in the cache too, copying every field it can read, still names another inode/ctime
    forged = {**record, "size": stamp.st_size, "mtime_ns": stamp.st_mtime_ns}
    record_path(entry.path()).write_text(json.dumps(forged))
    assert zoo.status(entry.name) == "corrupt"
    with pytest.raises(DownloadError, match="is not church-like .*delete it"):
        fetch(entry.name)


def test_rewriting_a_file_in_place_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "g.pt"
    path.write_bytes(b"aaaa")
    remember_sha256(path, hashlib.sha256(b"aaaa").hexdigest())
    stamp = path.stat()
    with open(path, "r+b") as fh:  # same inode, same size, mtime put back: ctime still moves
        fh.write(b"bbbb")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert file_identity_sha256(path) == hashlib.sha256(b"bbbb").hexdigest()
