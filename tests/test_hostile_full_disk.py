"""A full disk: adapt, resume, generate and export end with one line naming the path and the free
space, and the files written before stay intact. The disk is a small tmpfs filled to the brim
where this process may mount one (root), else every write fails with ENOSPC (injected)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import perturb, run_cli
from hyperdomainnet import atomic
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality

GEN = "random:32:channel_max=16:n_mlp=2"
TRAIN = ["--generator", GEN, "--clip", "random:tiny", "--target", "Sketch", "--batch", "2", "--device", "cpu",
         "--no-progress", "--log-every", "1"]


class Disk:
    """A folder whose file system can be filled (``fill``) and emptied again (``free``)."""

    def __init__(self, root: Path, mounted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.mounted, self.monkeypatch = root, mounted, monkeypatch

    def fill(self) -> None:
        if not self.mounted:
            def no_space(*args: object, **kwargs: object) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            self.monkeypatch.setattr(atomic.os, "fsync", no_space)
            return
        fd = os.open(self.root / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            for block in (65536, 1):  # then the last bytes a partial write left free
                while True:
                    try:
                        os.write(fd, b"\0" * block)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.monkeypatch.undo()
        (self.root / "filler").unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)], capture_output=True).returncode == 0
    try:
        yield Disk(root, mounted, monkeypatch)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)


def _one_line(err: str, path_fragment: str) -> None:
    """The error is the last line of stderr and the only one (a status line such as the resolved
    precision may precede it)."""
    lines = err.strip().splitlines()
    assert [line.startswith("error: ") for line in lines].count(True) == 1 and lines[-1].startswith("error: "), err
    assert "no space left on the device" in lines[-1] and "MiB free" in lines[-1] and path_fragment in lines[-1], err
    assert "Traceback" not in err


def test_adapt_into_a_full_disk(disk: Disk, capsys: pytest.CaptureFixture[str]) -> None:
    disk.fill()
    code, _, err = run_cli(capsys, "adapt", "text", *TRAIN, "--steps", "2", "--out", str(disk.root / "run"))
    assert code == 1
    _one_line(err, str(disk.root / "run"))


def test_resume_on_a_full_disk_keeps_the_checkpoint(disk: Disk, capsys: pytest.CaptureFixture[str]) -> None:
    run = disk.root / "run"
    code, _, err = run_cli(capsys, "adapt", "text", *TRAIN, "--steps", "2", "--out", str(run))
    assert code == 0, err
    (run / "domain.safetensors").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    disk.fill()
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(run), "--resume", "--steps", "4", "--no-progress")
    assert code == 1
    _one_line(err, str(run))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2  # the last good one, whole
    assert (run / "config.yaml").read_bytes() == before["config.yaml"]
    disk.free()
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(run), "--resume", "--steps", "4", "--no-progress")
    assert code == 0, err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4


def test_generate_and_export_onto_a_full_disk(disk: Disk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt = write_rosinality(perturb(load_generator(GEN)), tmp_path / "g.pt")
    disk.fill()
    code, _, err = run_cli(capsys, "generate", "--generator", str(pt), "--n", "2", "--device", "cpu",
                           "--out", str(disk.root / "images"))
    assert code == 1
    _one_line(err, str(disk.root / "images"))
    code, _, err = run_cli(capsys, "export", str(pt), "--out", str(disk.root / "e.pt"))
    assert code == 1
    _one_line(err, str(disk.root / "e.pt"))
    assert not [p for p in disk.root.rglob("*.tmp")]  # no temporary file left behind
