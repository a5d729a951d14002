"""Zoo names work wherever a file does: released domains and hypernetworks by name, `hdn info`, the CLI."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from test_convert import CAT_LAYOUT, official_forward
from test_zoo import released_archive

from hyperdomainnet import zoo
from hyperdomainnet.describe import describe_target
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.loaders import fetch, load_domain, load_hypernet
from hyperdomainnet.errors import ConfigError, FileFormatError
from hyperdomainnet.hypernet import HyperDomainNet


@pytest.fixture
def mappers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.nn.Module]:
    """The released archive (random-weight official checkpoints) in a fresh cache, converted once."""
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    data, mappers = released_archive(tmp_path)
    archive = zoo.resolve(zoo.ARCHIVE).path()
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(data)
    with pytest.warns(UserWarning, match="skipped .*td_broken.pt"):
        fetch("hdn-20")
    return mappers


def test_released_models_load_by_name(mappers: dict[str, torch.nn.Module]) -> None:
    domain = load_domain("td-ukiyo-e")
    assert domain.kind == "domain_vector" and domain.domain_layout == CAT_LAYOUT
    assert [float(p[0]) for p in torch.split(domain.vector, CAT_LAYOUT)] == list(range(len(CAT_LAYOUT)))
    assert torch.equal(load_domain("td_ukiyo-e").vector, domain.vector)  # aliases spelled as the file
    assert Domain.load(fetch("im2im-sketch")).style_mixing_from == 14 - 9  # (1, 9, 512) latents of 14 layers
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(load_hypernet("hdn-20").domain_vectors(x),
                              official_forward(mappers["mapper_20_td.pt"], x), atol=1e-5)
    with pytest.raises(ConfigError, match="^td-ukiyo-e is a zoo domain, not a hypernet"):
        load_hypernet("td-ukiyo-e")
    with pytest.raises(ConfigError, match="^hdn-20 is a zoo hypernet, not a domain"):
        load_domain("hdn-20")


def test_a_missing_path_keeps_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    with pytest.raises(FileFormatError, match="^domain file runs/x/domain.safetensors does not exist$"):
        load_domain("runs/x/domain.safetensors")
    with pytest.raises(FileFormatError, match="^HyperDomainNet file hypernet.safetensors does not exist$"):
        load_hypernet("hypernet.safetensors")
    with pytest.raises(ConfigError, match="^nope is neither an existing file nor a zoo name"):
        load_domain("nope")
    code, _, err = run_cli(capsys, "info", "runs/x/domain.safetensors")
    assert (code, err) == (1, "error: runs/x/domain.safetensors does not exist; check the path\n")


def test_hdn_info_describes_released_models_by_name(mappers: dict[str, torch.nn.Module],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "info", "hdn-20")
    assert code == 0
    assert "kind: HyperDomainNet (text embedding → domain vector)" in out
    assert f"domain_size: {sum(CAT_LAYOUT)}" in out and "width: 16" in out
    assert describe_target("hdn-im2im")["official"]["file"] == "mapper_base_im2im.pt"
    domain = describe_target("td-ukiyo-e")
    assert domain["kind"] == "domain file (domain_vector)" and domain["layers"] == len(CAT_LAYOUT)
    # listed by the registry but absent from this archive: described as an entry, not opened
    assert describe_target("hdn-large")["kind"].startswith("zoo hypernet (not downloaded;")
    assert describe_target("ffhq")["kind"] == ("zoo generator (not downloaded; `hdn download stylegan2-ffhq-config-f` "
                                               "fetches it)")
    assert describe_target(zoo.ARCHIVE)["kind"] == "zoo archive (downloaded)"


def test_hdn_generate_reads_a_released_domain_by_name(mappers: dict[str, torch.nn.Module], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a small generator keeps this cheap: the name resolves, the file is read, its layout is checked
    code, _, err = run_cli(capsys, "generate", "--domain", "td-ukiyo-e*0.5", "--generator", "random:16",
                           "--n", "1", "--device", "cpu", "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.startswith(f"error: domain file was made for generator stylegan2-cat-config-f, another layout: "
                          f"{len(CAT_LAYOUT)} modulated convs ({sum(CAT_LAYOUT)} numbers) where the generator has 5 "
                          "(2560 numbers);")
    assert not (tmp_path / "out").exists()


def test_a_released_model_is_not_checked_against_the_archive_digest(mappers: dict[str, torch.nn.Module]) -> None:
    archive = dataclasses.replace(zoo.resolve(zoo.ARCHIVE), sha256="0" * 64, sha256_provenance="published")
    entry = zoo._released(archive, "td-ukiyo-e", "domain", "checkpoints/td_checkpoints/td_ukiyo-e.pt", "ukiyo-e")
    assert (entry.sha256, entry.sha256_provenance) == (None, "none")
    assert zoo.status(entry) == "downloaded" and zoo.cached_path(entry) == entry.path()
