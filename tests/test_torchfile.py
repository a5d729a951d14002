"""read_torch_file: the one reader of .pt files (zip and legacy formats, weights only, one-line errors)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from hyperdomainnet.errors import FileFormatError
from hyperdomainnet.torchfile import PickledStub, read_torch_file


class _Payload:
    def __reduce__(self):  # pragma: no cover - must never run
        return (os.system, ("echo pwned > /tmp/hdn_torchfile_pwned",))


class _Config:
    """A class the reader may turn into an inert stand-in."""

    def __init__(self) -> None:
        self.value = 3


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_zip_and_legacy_formats(tmp_path: Path, legacy: bool) -> None:
    payload = {"w": torch.arange(6.0).reshape(2, 3), "args": argparse.Namespace(size=8), "n": 3}
    torch.save(payload, tmp_path / "a.pt", _use_new_zipfile_serialization=not legacy)
    got = read_torch_file(tmp_path / "a.pt", "test file", allowed=(argparse.Namespace,))
    assert torch.equal(got["w"], payload["w"]) and got["args"].size == 8 and got["n"] == 3


def test_named_classes_become_inert_stubs(tmp_path: Path) -> None:
    torch.save({"cfg": _Config()}, tmp_path / "c.pt")
    got = read_torch_file(tmp_path / "c.pt", "test file", stub=lambda name: name.endswith("_Config"))
    assert isinstance(got["cfg"], PickledStub) and got["cfg"].state == {"value": 3}
    with pytest.raises(FileFormatError, match="cannot be loaded safely .*_Config"):
        read_torch_file(tmp_path / "c.pt", "test file")


def test_bad_files_are_one_line(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(64)}, tmp_path / "good.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:300])
    (tmp_path / "junk.pt").write_text("junk\n")
    (tmp_path / "zeros.pt").write_bytes(b"\x00garbage" * 10)
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"p": _Payload()}, tmp_path / "evil.pt")
    cases = {"trunc.pt": "not a readable PyTorch checkpoint", "junk.pt": "not a readable PyTorch checkpoint",
             "zeros.pt": "not a readable PyTorch checkpoint", "empty.pt": "not a readable PyTorch checkpoint",
             "evil.pt": "cannot be loaded safely", "missing.pt": "does not exist", ".": "not a file"}
    for name, message in cases.items():
        with pytest.raises(FileFormatError, match=message) as info:
            read_torch_file(tmp_path / name, "test file")
        assert "\n" not in str(info.value) and "test file" in str(info.value)
    assert not Path("/tmp/hdn_torchfile_pwned").exists()
