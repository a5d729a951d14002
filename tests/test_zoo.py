"""The zoo registry, cached fetch, `hdn models` / `hdn download`, and the released-archive conversion."""
from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from test_convert import CAT_ARGS, CAT_LAYOUT, cin_mult_state, mapper_payload, official_forward, official_mapper
from test_download import Served

from hyperdomainnet import zoo
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.errors import ConfigError, DownloadError, HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.loaders import artefact_path, fetch
from hyperdomainnet.domain.files import REFERENCE_LATENT

SHORT_ALIASES = {"ffhq": "stylegan2-ffhq-config-f", "afhq-cat": "stylegan2-afhqcat-512x512",
                 "afhq-dog": "stylegan2-ada-afhqdog", "car": "stylegan2-car-config-f",
                 "cat": "stylegan2-cat-config-f", "church": "stylegan2-church-config-f",
                 "horse": "stylegan2-horse-config-f", "restyle-psp-ffhq": "restyle-psp-ffhq",
                 "restyle-e4e-ffhq": "restyle-e4e-ffhq", "e4e": "e4e-ffhq",
                 "landmarks": "dlib-landmarks-68", "hdn-20": "hdn-20"}
HF_PINNED = re.compile(r"https://huggingface\.co/[^/]+/[^/]+/resolve/[0-9a-f]{40}/.+")


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))


def use_entries(monkeypatch: pytest.MonkeyPatch, *changed: zoo.ZooEntry) -> None:
    """The registry with ``changed`` entries replacing those of the same name (or appended)."""
    by_name = {e.name: e for e in zoo._registry()}
    by_name.update({e.name: e for e in changed})
    monkeypatch.setattr(zoo, "_registry", lambda: tuple(by_name.values()))


def local_generator(server: Served, data: bytes) -> zoo.ZooEntry:
    return dataclasses.replace(zoo.resolve("church"), name="tiny-generator", file_name="tiny.pt", aliases=(),
                               urls=(server.add("/tiny.pt", data),), sha256=hashlib.sha256(data).hexdigest(),
                               size=len(data))


# ----- the registry -------------------------------------------------------------------------------
REGISTRY_FLOOR = {"zoo", "download", "hashing", "paths", "atomic", "progress", "errors"}


def test_the_registry_imports_no_model_code() -> None:
    """zoo.py and what it stands on import (at any depth of the file, functions included) only each
    other: names are resolved at the edge (loaders), so no import circle can run through the zoo."""
    import ast

    src = Path(zoo.__file__).parent
    for module in REGISTRY_FLOOR:
        tree = ast.parse((src / f"{module}.py").read_text())
        used = {(node.module or "").split(".")[0] or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}
        assert used <= REGISTRY_FLOOR, (module, used - REGISTRY_FLOOR)


def test_entries_are_well_formed() -> None:
    entries = zoo.list_entries()
    assert len({e.name for e in entries}) == len(entries) == len({e.file_name for e in entries})
    for e in entries:
        assert e.kind in ("generator", "encoder", "landmarks", "archive", "domain", "hypernet"), e.name
        assert e.sha256_provenance in zoo.PROVENANCES, e.name
        assert (e.sha256 is not None) == (e.sha256_provenance != "none"), e.name  # a hash says where it is from
        assert e.size is None or (e.size > 0 and e.sha256 is not None), e.name
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.sha256_source and e.source and e.license and e.description and e.urls, e.name
        assert all(u.startswith("https://") and " " not in u for u in e.urls), e.name
        assert (e.member is not None) == (e.kind in ("domain", "hypernet")), e.name
        if e.kind == "generator" and not e.name.startswith("sg3-"):  # a Hugging Face copy pinned to a commit, first
            assert HF_PINNED.fullmatch(e.urls[0]) and e.sha256_provenance == "published", e.name
    released = {e.name for e in entries if e.member}
    assert {"hdn-20", "hdn-large", "hdn-im2im", "td-ukiyo-e", "td-pixar", "im2im-sketch"} <= released
    assert len(released) == 3 + 9 + 7  # the research code's three mappers and sixteen example domains
    assert zoo.resolve("ffhq").size == 381_462_551


def test_generator_architectures() -> None:
    sizes = {e.name: e.resolution for e in zoo.list_entries() if e.kind == "generator" and not e.name.startswith("sg3-")}
    assert sizes == {"stylegan2-ffhq-config-f": 1024, "stylegan2-afhqcat-512x512": 512, "stylegan2-ada-afhqdog": 512,
                     "stylegan2-car-config-f": 512, "stylegan2-cat-config-f": 256,
                     "stylegan2-church-config-f": 256, "stylegan2-horse-config-f": 256}
    for e in zoo.list_entries():
        if not e.name.startswith("sg3-"):
            assert e.arch == {"size": e.resolution, "n_mlp": 8, "channel_multiplier": 2}, e.name


@pytest.mark.parametrize(("alias", "name"), sorted(SHORT_ALIASES.items()))
def test_aliases_resolve(alias: str, name: str) -> None:
    assert zoo.resolve(alias).name == name
    assert zoo.resolve(f" {alias.upper().replace('-', '_')} ").name == name


def test_names_and_file_names_resolve_unknown_is_one_line() -> None:
    for e in zoo.list_entries():
        assert zoo.resolve(e.name) == e == zoo.resolve(Path(e.file_name).name) == zoo.resolve(e)
    with pytest.raises(HDNError, match="unknown zoo name 'stylegan2-wikiart'; `hdn models` lists"):
        zoo.resolve("stylegan2-wikiart")
    with pytest.raises(ConfigError, match="no-such is neither an existing file nor a zoo name"):
        artefact_path("no-such", "generator")


# ----- fetch and status ---------------------------------------------------------------------------
def test_fetch_downloads_once_then_needs_no_network(server: Served, tmp_path: Path) -> None:
    data = b"\x00generator bytes" * 1000
    entry = local_generator(server, data)
    assert zoo.status(entry) == "not downloaded" and zoo.cached_path(entry) is None
    path = zoo.fetch(entry)
    assert path == tmp_path / "hdn" / "models" / "tiny.pt" and path.read_bytes() == data
    assert artefact_path(tmp_path, "generator") == tmp_path  # an existing path is itself
    server.files.clear()  # the source is gone: the verified cache suffices
    assert zoo.fetch(entry) == path == zoo.cached_path(entry) and zoo.status(entry) == "downloaded"


def test_corrupt_file_is_named_and_never_replaced(server: Served, tmp_path: Path) -> None:
    entry = local_generator(server, b"published bytes")
    entry.path().parent.mkdir(parents=True)
    entry.path().write_bytes(b"my own fine-tuned generator")
    assert zoo.status(entry) == "corrupt" and zoo.cached_path(entry) is None
    with pytest.raises(DownloadError, match=f"{re.escape(str(entry.path()))} is not tiny-generator .*delete it"):
        zoo.fetch(entry)
    assert entry.path().read_bytes() == b"my own fine-tuned generator"


def test_hdn_models_says_corrupt(server: Served, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    entry = local_generator(server, b"published bytes")
    use_entries(monkeypatch, entry)
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and re.search(r"tiny-generator +generator +256 +15 B +published +not downloaded", out)
    assert re.search(r"hdn-20 +hypernet +1024 +- +converted +comes with hyperdomainnet-checkpoints", out)
    assert re.search(r"im2im-titan-erwin +domain +1024 +- +converted +comes with", out)
    assert re.search(r"restyle-psp-ffhq +encoder +1024 +\? +not pinned +not downloaded", out)
    assert re.search(r"dlib-landmarks-68 +landmarks +- +99\.7 MB +published +not downloaded", out)  # no image size
    assert out.startswith("SHA-256: published = an independent published hash")
    entry.path().parent.mkdir(parents=True)
    entry.path().write_bytes(b"truncated")
    _, out, _ = run_cli(capsys, "models")
    assert re.search(rf"tiny-generator +generator +256 +15 B +published +corrupt: delete {re.escape(str(entry.path()))} to "
                     "download again\n", out)


def test_hdn_download_tries_every_name_then_summarises(server: Served, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    good = local_generator(server, b"fine")
    broken = dataclasses.replace(good, name="broken-generator", file_name="broken.pt",
                                 urls=(server.url + "/absent.pt",))
    use_entries(monkeypatch, good, broken)
    code, out, err = run_cli(capsys, "download", "broken-generator", "nope", "tiny-generator")
    assert code == 1 and out == f"tiny-generator: {good.path()}\n"
    lines = err.splitlines()
    assert lines[0].startswith("error: broken-generator: could not download broken-generator (")
    assert lines[0].endswith(f"download it yourself from {server.url}/absent.pt and place it at {broken.path()}")
    assert lines[1] == "error: nope: unknown zoo name 'nope'; `hdn models` lists the known names"
    assert lines[2:] == ["1 of 3 downloaded; failed: broken-generator, nope"]
    assert not broken.path().exists()


# ----- the released archive -----------------------------------------------------------------------
def released_archive(tmp_path: Path) -> tuple[bytes, dict[str, torch.nn.Module]]:
    """A zip in the released layout, from random-weight official checkpoints (LSUN cat layout)."""
    mappers = {"mapper_20_td.pt": official_mapper(CAT_LAYOUT), "mapper_base_im2im.pt": official_mapper(CAT_LAYOUT)}
    td = {"model_type": "parameterization", "patch_key": "cin_mult", "state_dict": cin_mult_state(CAT_LAYOUT),
          "sg2_params": CAT_ARGS, "da_type": "td"}
    im2im = {**td, "da_type": "im2im", "style_latents": torch.randn(1, 9, 512)}  # W+ layers 5…13 of 14
    payloads = {"checkpoints/td_checkpoints/td_ukiyo-e.pt": td, "checkpoints/td_checkpoints/td_unlisted.pt": td, "checkpoints/im2im_checkpoints/im2im_sketch.pt": im2im,
                **{f"checkpoints/{k}": mapper_payload(v) for k, v in mappers.items()},
                "checkpoints/notes/readme.pt": td, "__MACOSX/checkpoints/td_checkpoints/._td_ukiyo-e.pt": td,
                "checkpoints/td_checkpoints/td_broken.pt": {**td, "patch_key": "csa"}}  # ignored / skipped
    zpath = tmp_path / "src.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for member, payload in payloads.items():
            torch.save(payload, tmp_path / "one.pt")
            zf.write(tmp_path / "one.pt", member)
    return zpath.read_bytes(), mappers


def test_released_models_are_converted_on_first_use(server: Served, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data, mappers = released_archive(tmp_path)
    url = server.add("/checkpoints.zip", data)
    use_entries(monkeypatch, *(dataclasses.replace(e, urls=(url,)) for e in zoo._registry()
                               if e.name == zoo.ARCHIVE or e.member))
    assert "td-unlisted" not in {e.name for e in zoo.list_entries()}  # listed once the archive is unpacked
    assert zoo.status("td-ukiyo-e") == "comes with hyperdomainnet-checkpoints"  # named by the registry

    with pytest.warns(UserWarning) as caught:
        path = fetch("hdn-20")
    assert [str(w.message).split(" ")[0] for w in caught] == ["hyperdomainnet-checkpoints:", "skipped"]
    assert re.search(r"skipped checkpoints/td_checkpoints/td_broken.pt of .*: td_broken.pt uses parameterisation 'csa'",
                     str(caught[1].message))
    assert path == tmp_path / "hdn" / "models" / "released" / "hdn-20.safetensors"
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(HyperDomainNet.load(path).domain_vectors(x),
                              official_forward(mappers["mapper_20_td.pt"], x), atol=1e-5)
    assert HyperDomainNet.load(fetch("hdn-im2im")).metadata["official"]["file"] == "mapper_base_im2im.pt"

    server.files.clear()  # everything below comes from the cache
    kinds = {e.name: e.kind for e in zoo.list_entries() if e.member}
    assert {"hdn-20": "hypernet", "hdn-large": "hypernet", "hdn-im2im": "hypernet", "td-ukiyo-e": "domain",
            "im2im-sketch": "domain", "td-unlisted": "domain"}.items() <= kinds.items()
    assert zoo.status("td-pixar") == "not downloaded"  # named by the registry, absent from this archive
    domain = Domain.load(fetch("td_ukiyo-e"))
    assert [float(p[0]) for p in torch.split(domain.vector, CAT_LAYOUT)] == list(range(len(CAT_LAYOUT)))
    assert Domain.load(fetch("im2im-sketch")).tensors[REFERENCE_LATENT].shape == (1, 9, 512)
    assert zoo.resolve("im2im-sketch").sha256_provenance == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known from the manifest: no second conversion (it would warn again)
        with pytest.raises(DownloadError, match="holds no convertible mapper_large_resample_td.pt"):
            fetch("hdn-large")
    path.unlink()  # a converted file removed by hand comes back from the cached archive
    with pytest.warns(UserWarning, match="skipped .*td_broken"):
        assert fetch("hdn-20") == path and path.is_file()
    _, out, _ = run_cli(capsys, "models")
    assert re.search(r"td-ukiyo-e +domain +1024 +- +converted +downloaded", out)
    assert artefact_path("hdn-20", "hypernet") == path
    with pytest.raises(ConfigError, match="td-ukiyo-e is a zoo domain, not a hypernet"):
        artefact_path("td-ukiyo-e", "hypernet")


def test_an_html_page_instead_of_the_archive_is_refused(server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.add("/checkpoints.zip", b"<!DOCTYPE html><html>Google Drive: quota exceeded</html>")
    use_entries(monkeypatch, dataclasses.replace(zoo.resolve(zoo.ARCHIVE), urls=(url,)))
    with pytest.raises(DownloadError, match="served an HTML page instead of the file .*set HDN_MIRROR") as info:
        fetch("hdn-20")
    assert "\n" not in str(info.value)
    assert not zoo.resolve(zoo.ARCHIVE).path().parent.exists() or not any(zoo.resolve(zoo.ARCHIVE).path().parent.iterdir())
