"""A run folder under stress: two runs into one --out (two real processes), a holder killed with
SIGKILL, and a damaged log.jsonl at --resume and --force."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_cli
from hyperdomainnet.training.run_folder import LOCK_NAME, read_log

GEN = "random:32:channel_max=16:n_mlp=2"
SETTINGS = ["--generator", GEN, "--clip", "random:tiny", "--batch", "2", "--device", "cpu", "--no-progress"]


def _start_run(out: Path) -> subprocess.Popen:
    """A real ``hdn adapt text`` process training into ``out`` until killed, once it has logged a step."""
    code = "import sys; from hyperdomainnet.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "adapt", "text", *SETTINGS, "--target", "Sketch", "--out", str(out),
            "--steps", "100000", "--save-every", "1", "--log-every", "1"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 120
    while not ((out / "log.jsonl").is_file() and (out / "checkpoint.pt").is_file()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the first run did not start: {process.communicate()}")
        time.sleep(0.2)
    return process


def test_second_run_into_a_busy_folder_refuses_and_a_killed_holder_frees_it(tmp_path, capsys):
    out = tmp_path / "o"
    first = _start_run(out)
    try:
        for extra in ([], ["--force"]):
            code, _, err = run_cli(capsys, "adapt", "text", *SETTINGS, "--target", "Pixar", "--steps", "2",
                                   "--out", str(out), *extra)
            assert code == 1 and err.count("\n") == 1, err
            assert f"in use by another run (pid {first.pid} on host" in err, err
        code, _, err = run_cli(capsys, "adapt", "text", "--out", str(out), "--resume", "--no-progress")
        assert code == 1 and f"pid {first.pid}" in err, err
        assert yaml.safe_load((out / "config.yaml").read_text())["target"] == "Sketch"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert (out / LOCK_NAME).is_file()  # left by the killed holder: stale, not held
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(out), "--resume", "--steps", str(step + 1),
                           "--no-progress")
    assert code == 0, err
    assert (out / "domain.safetensors").is_file()
    assert not (out / LOCK_NAME).exists()  # a finished run leaves no lock file


def _train(capsys, out: Path, *extra: str) -> tuple[int, str]:
    code, _, err = run_cli(capsys, "adapt", "text", *SETTINGS, "--target", "Sketch", "--out", str(out),
                           "--log-every", "1", "--grid-every", "100", *extra)
    return code, err


@pytest.mark.parametrize("damage", [
    pytest.param(lambda text: text + '{"step": 3, "total": 0.', id="torn-last-line"),
    pytest.param(lambda text: text + '{"total": 0.5}\n', id="line-without-step"),
    pytest.param(lambda text: text.replace("\n", "\n\x00\xff garbage\n", 1), id="garbage-inside"),
])
def test_damaged_log_never_blocks_resume(tmp_path, capsys, damage):
    out = tmp_path / "run"
    code, err = _train(capsys, out, "--steps", "2")
    assert code == 0, err
    log = out / "log.jsonl"
    log.write_text(damage(log.read_text()))
    code, err = _train(capsys, out, "--steps", "3", "--resume")
    assert code == 0, err
    assert "warning: " in err and "skipped 1 unreadable line" in err  # the CLI prints warnings as lines
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line valid again
    assert [r["step"] for r in records] == [1, 2, 3]


def test_force_into_a_folder_with_a_foreign_log(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_bytes(b"\x89PNG not a log at all\n[1, 2]\n")
    code, err = _train(capsys, out, "--steps", "1", "--force")
    assert code == 0, err
    assert "warning: " in err and "skipped 2 unreadable line" in err
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1]


def test_read_log_keeps_records_with_integer_steps(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "total": 1.0}\n{"step": "2"}\n{"step": true}\n\n{"step": 4, "total": null}\n')
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable line\(s\) \(first: line 2\)"):
        assert [r["step"] for r in read_log(path)] == [1, 4]
    assert read_log(tmp_path / "missing.jsonl") == []


def test_non_finite_terms_are_logged_as_null(tmp_path):
    """A diverged step's terms keep log.jsonl valid JSON, also when an old log holding NaN is rewritten."""
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.loop import MetricLogger

    (tmp_path / "log.jsonl").write_text('{"step": 1, "total": NaN}\n{"step": 2, "total": 1.0}\n')
    logger = MetricLogger(tmp_path, TextAdaptConfig(target="x"), resume_step=1)
    logger.log(2, {"total": float("inf"), "direction": float("nan"), "indomain": 0.5})
    records = [json.loads(line, parse_constant=pytest.fail) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0] == {"step": 1, "total": None}
    assert records[1]["total"] is None and records[1]["direction"] is None and records[1]["indomain"] == 0.5
