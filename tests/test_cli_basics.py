"""`hdn info`, `hdn models`, `hdn download`: output and one-line errors with non-zero exit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperdomainnet import load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.domain import Domain
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality

SPEC = "random:16:channel_max=8:n_mlp=2"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_random_spec_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", SPEC, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["size"] == 16 and report["domain_size"] == 8 * 5 and report["name"] == SPEC


def test_info_checkpoint_and_domain_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = load_generator(SPEC)
    write_rosinality(G, tmp_path / "g.pt")
    code, out, _ = run(capsys, "info", str(tmp_path / "g.pt"))
    assert code == 0 and "domain_size: 40" in out and "sha256:" in out
    domain = Domain(torch.full((G.domain_size,), 0.5), "domain_vector", G.domain_layout, G.identity,
                    metadata={"target": "Pixar"})
    domain.save(tmp_path / "d.safetensors")
    code, out, _ = run(capsys, "info", str(tmp_path / "d.safetensors"))
    assert code == 0 and "domain file (domain_vector)" in out and "target: Pixar" in out
    assert f"name: {SPEC}" in out


@pytest.mark.parametrize("target,message", [
    ("/no/such/file.pt", "/no/such/file.pt does not exist; check the path"),
    ("random:12", "power of two"),
])
def test_info_errors_are_one_line(target: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", target)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_info_on_non_generator_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    code, _, err = run(capsys, "info", str(tmp_path / "x.safetensors"))
    assert code == 1 and "x.safetensors is a text file; expected a generator checkpoint" in err


@pytest.mark.parametrize("name, content, looks", [
    ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image"),
    ("notes.txt", "Sketch – Photo\n".encode() * 3, "a text file"),
    ("empty.pt", b"", "an empty file")])
def test_info_names_what_it_reads_and_what_the_file_looks_like(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               name: str, content: bytes, looks: str) -> None:
    (tmp_path / name).write_bytes(content)
    code, _, err = run(capsys, "info", str(tmp_path / name))
    assert code == 1 and err.count("\n") == 1
    assert f"{name} is {looks}" in err and "domain file, HyperDomainNet or latent" in err


def test_models_lists_zoo(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path))
    code, out, _ = run(capsys, "models")
    assert code == 0 and "stylegan2-ffhq-config-f" in out and "not downloaded" in out


def test_download_failure_names_manual_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from hyperdomainnet import zoo

    monkeypatch.setenv("HDN_HOME", str(tmp_path))
    entry = zoo.resolve("church")
    closed = dataclasses.replace(entry, urls=("http://127.0.0.1:9/stylegan2-church-config-f.pt",))
    monkeypatch.setattr(zoo, "resolve", lambda name: closed)
    monkeypatch.setattr(zoo, "_registry", lambda: (closed,))
    code, _, err = run(capsys, "download", "church")
    assert code == 1 and "download it yourself" in err and str(tmp_path) in err
    assert not (tmp_path / "models" / entry.file_name).exists()


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "info")
    assert code == 2


def test_export_writes_an_equivalent_rosinality_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = load_generator(SPEC)
    code, out, err = run(capsys, "export", SPEC, "--out", str(tmp_path / "g.pt"))
    assert code == 0, err
    again = load_generator(tmp_path / "g.pt")
    z = torch.randn(2, 512)
    torch.testing.assert_close(again(z), G(z), atol=0, rtol=0)


def test_export_never_replaces_without_force_and_follows_the_extension(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "g.pt"
    target.write_bytes(b"earlier result")
    code, _, err = run(capsys, "export", SPEC, "--out", str(target))
    assert code == 1 and "--force" in err and err.count("\n") == 1
    assert target.read_bytes() == b"earlier result"
    code, _, err = run(capsys, "export", SPEC, "--out", str(tmp_path / "g.safetensors"))
    assert code == 1 and ".pt" in err and err.count("\n") == 1
    assert not (tmp_path / "g.safetensors").exists()
    code, _, err = run(capsys, "export", SPEC, "--out", str(target), "--force")
    assert code == 0, err
    assert load_generator(target).identity["arch"] == load_generator(SPEC).identity["arch"]


def test_export_checks_the_destination_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "export", "no-such-model", "--out", str(tmp_path / "file" / "g.pt"))
    assert code == 1 and "is a file, not a directory" in err and err.count("\n") == 1


def test_convert_never_replaces_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "d.safetensors"
    target.write_bytes(b"earlier result")
    code, _, err = run(capsys, "convert", str(tmp_path / "missing.pt"), "--out", str(target))
    assert code == 1 and "--force" in err and target.read_bytes() == b"earlier result"
    code, _, err = run(capsys, "convert", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "d.pt"))
    assert code == 1 and ".safetensors" in err and err.count("\n") == 1
