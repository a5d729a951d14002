"""The web app's private folder (renders, uploaded photos): bounded while it runs, removed on
every exit — SIGTERM and SIGHUP as well as Ctrl-C."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from e2e.browser import HdnProcess, free_port  # noqa: E402
from hyperdomainnet.ui import prune_folder  # noqa: E402


def test_prune_folder_drops_old_files_then_the_oldest_beyond_the_size(tmp_path: Path) -> None:
    now = time.time()
    for name, age, size in [("old.png", 700, 10), ("a.png", 300, 40), ("b/c.webp", 200, 40), ("d.png", 100, 40)]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age, now - age))
    assert prune_folder(tmp_path, max_age_s=600, max_bytes=100) == 2  # old.png by age, a.png by size
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["c.webp", "d.png"]
    assert prune_folder(tmp_path, max_age_s=600, max_bytes=100) == 0


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 0)])  # Ctrl-C: Gradio's clean stop
def test_private_folder_is_removed_on_every_exit(tmp_path: Path, sig: int, status: int) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    app = HdnProcess(["ui", "--generator", "random:16:channel_max=8:n_mlp=2", "--port", str(free_port()),
                      "--device", "cpu"], {"TMPDIR": str(temp), "HDN_HOME": str(tmp_path / "home"),
                                           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    try:
        app.wait_for_url()
        private = [p for p in temp.iterdir() if p.name.startswith("hdn-ui-")]
        assert len(private) == 1, list(temp.iterdir())
        (private[0] / "upload").mkdir(exist_ok=True)
        (private[0] / "upload" / "photo.png").write_bytes(b"an uploaded photo")
        app.proc.send_signal(sig)
        code = app.proc.wait(timeout=60)
    finally:
        app.stop()
    assert code == status, (code, app.output)
    assert not private[0].exists(), app.output
