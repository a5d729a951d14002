"""Atomic writes: umask mode, no leftovers on failure, stale temporaries, output-destination checks."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hyperdomainnet.atomic import (atomic_path, check_output_dir, check_output_file,
                                   remove_stale_temporaries)
from hyperdomainnet.errors import HDNError


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_only_old_temporaries_of_our_naming_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    fresh = tmp_path / ".checkpoint.pt.def456.tmp"
    other = tmp_path / "notes.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"0" * 16)
    hour_ago = time.time() - 7200
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(other, (hour_ago, hour_ago))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and fresh.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_output_checks_refuse_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(HDNError, match="is a file, not a directory"):
        check_output_file(blocker / "sub" / "x.png")
    with pytest.raises(HDNError, match="--force"):
        check_output_file(blocker)
    assert check_output_file(blocker, force=True) == blocker
    with pytest.raises(HDNError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(HDNError, match="already holds files; pass --force"):
        check_output_dir(tmp_path)
    with pytest.raises(HDNError, match="is a file; give a directory"):
        check_output_dir(blocker, force=True)
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_unique_names_are_safe_and_distinct() -> None:
    from hyperdomainnet.paths import unique_names

    assert unique_names(["a b", "a/b", "a b", "", "..x"]) == ["a_b", "a_b-2", "a_b-3", "item", "x"]
    assert unique_names(["a sketch!", "a sketch"], unsafe=r"[^a-z0-9]+", fill="-", separator="_") == \
        ["a-sketch", "a-sketch_2"]
