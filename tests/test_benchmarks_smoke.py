"""Every benchmark script runs once at a tiny size, so none can rot unnoticed (speed is not checked)."""
from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run benchmarks/<name> as ``__main__`` in this process; its exit status (0 when it returns)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [name, *args])
    try:
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def test_every_benchmark_script_is_covered():
    assert {p.name for p in BENCHMARKS.glob("*.py")} == {"generator.py", "agreement.py", "memory_cap.py",
                                                         "train_step.py", "encoder_inversion.py",
                                                         "peak_memory.py", "stylegan3.py"}


@pytest.mark.parametrize("kind", ["psp", "encoder4editing"])
def test_encoder_inversion_benchmark(monkeypatch, capsys, kind):
    code = run_script("encoder_inversion.py", "--kind", kind, "--size", "32", "--encoder-width", "16",
                      "--clip", "random:tiny",
                      "--hyper-width", "16", "--iterations", "2", "--batch", "2", "--repeats", "1",
                      "--ii2s-steps", "2", "--pnorm-samples", "64", "--threads", "1", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    figures = {line.split(":")[0].strip(): float(line.split(":")[1].split()[0])
               for line in out.splitlines() if line.startswith(("encoder inversion", "hdn stylize", "II2S"))}
    assert len(figures) == 4 and all(v > 0 for v in figures.values())
    assert "scaled from 2 timed steps" in out


def test_generator_benchmark(monkeypatch, capsys):
    code = run_script("generator.py", "--sizes", "32", "--channel-max", "16", "--batch", "1", "--repeats", "1",
                      "--threads", "1", "--same-process", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.lstrip().startswith("32 ")]
    assert [r[1] for r in rows] == ["fwd", "fwd+bwd"] and all(float(r[2]) > 0 for r in rows)


def test_agreement_benchmark(monkeypatch, capsys):
    code = run_script("agreement.py", "--sizes", "32", "--channel-max", "16", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.lstrip().startswith("32 ")]
    assert len(rows) >= 3 and all(float(r.split()[-1]) > 0.99 for r in rows[:2])  # fp32 paths agree


def test_memory_cap_benchmark(monkeypatch, capsys, tmp_path):
    args = ["0.5", "--", "generate", "--generator", "random:32:channel_max=16:n_mlp=2", "--n", "1",
            "--device", "cuda", "--out", str(tmp_path / "g")]
    if torch.cuda.is_available():
        assert run_script("memory_cap.py", *args, monkeypatch=monkeypatch) == 0
        assert "peak allocated" in capsys.readouterr().out
    else:  # the cap is a CUDA allocator setting: off a GPU the script says so and stops
        code = run_script("memory_cap.py", *args, monkeypatch=monkeypatch)
        assert code == 1 and (tmp_path / "g").exists() is False


def test_train_step_benchmark():
    """A subprocess: the script spawns its cases (render kind only: no CLIP at this size)."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / "train_step.py"), "--sizes", "32", "--kinds", "render",
                             "--labels", "fast", "--batch", "1", "--repeats", "1", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stdout and "img/s" in result.stdout


def test_train_step_targets_rows_use_micro_batches_only_where_asked(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import train_step

    rows = [c for c in train_step.cases([256], ["B/32"], "cpu", [1, 4, 16], batch=4, micro_batch=16)
            if c.kind == "targets"]
    assert [c.label for c in rows] == ["K=1", "K=4", "K=16 mb 16"]
    assert [c.changes.get("micro_batch") for c in rows] == [None, None, 16]
    assert [len(c.changes.get("targets", [])) for c in rows] == [0, 4, 16]
    plain = [c for c in train_step.cases([256], ["B/32"], "cpu", [16]) if c.kind == "targets"]
    assert plain[0].label == "K=16" and "micro_batch" not in plain[0].changes


@pytest.mark.parametrize("keep", [False, True])
def test_peak_memory_benchmark(monkeypatch, capsys, keep):
    args = ["--generator", "random:32:channel_max=16:n_mlp=2", "--clip", "random:tiny", "--batch", "2",
            "--steps", "1", "--threads", "1"] + (["--keep-text-towers"] if keep else [])
    assert run_script("peak_memory.py", *args, monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert ("text towers freed" in out) != keep and ("kept whole" in out) == keep
    assert "training step 1" in out and float(out.split("process peak: ")[1].split()[0]) > 0


def test_stylegan3_benchmark(monkeypatch, capsys):
    code = run_script("stylegan3.py", "--sizes", "32", "--reference-sizes", "32", "--step-size", "32", "--batch", "2",
                      "--clip", "random:tiny", "--repeats", "1", "--threads", "1",
                      "--spec-extra", ":channel_base=256:channel_max=16:style_dim=16",
                      "--sg2-extra", ":channel_max=16:n_mlp=2", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    renders = [line for line in out.splitlines() if line.startswith("render")]
    steps = [line for line in out.splitlines() if line.startswith("step")]
    assert len(renders) == 2 and len(steps) == 3 and all("of it reached" in line for line in steps)
