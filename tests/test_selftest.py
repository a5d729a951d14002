"""`hdn selftest`: the README's offline quick start on tiny models, one line per step and a verdict."""
from __future__ import annotations

import os

import pytest

from conftest import run_cli
from hyperdomainnet.cli import selftest


def test_selftest_runs_every_quick_start_step_and_passes(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDN_HOME", "/nonexistent/kept")
    cwd = os.getcwd()
    code, out, err = run_cli(capsys, "selftest")
    assert code == 0, out + err
    lines = out.splitlines()
    steps = selftest.quick_start()
    assert [line.split()[0] for line in lines[1:-1]] == ["ok"] * len(steps)
    assert [line.split("hdn ", 1)[1].rsplit(None, 2)[0] for line in lines[1:-1]] == [s.name for s in steps]
    assert lines[-1].startswith(f"selftest passed: {len(steps)} of {len(steps)} steps in ")
    assert os.getcwd() == cwd and os.environ["HDN_HOME"] == "/nonexistent/kept"


def test_a_failing_step_is_named_and_the_verdict_is_exit_1(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "quick_start", lambda: [
        selftest.Step("info", ("info", "missing.safetensors")),
        selftest.Step("export", ("export", selftest.GENERATOR, "--out", "g.pt"), ("g.pt", "other.pt")),
        selftest.Step("models", ("models",))])
    code, out, err = run_cli(capsys, "selftest")
    assert code == 1
    info, export, models = out.splitlines()[1:]
    assert info.split()[:3] == ["FAIL", "1/3", "hdn"] and "error:" in info and "missing.safetensors" in info
    assert export.split()[0] == "FAIL" and export.endswith("did not write other.pt")
    assert models.split()[0] == "ok"
    assert err.startswith("selftest failed: 2 of 3 steps (info, export) in ") and err.count("\n") == 1
