"""SIGINT / SIGTERM stop a training run with a checkpoint of the step reached, resumable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.training.config import HypernetConfig, TextAdaptConfig
from hyperdomainnet.training.loop import TrainingInterrupted, command_and_label, run_training
from hyperdomainnet.training.text import TextTrainer

from conftest import run_cli

GEN = "random:32:channel_max=16:n_mlp=2"
SETTINGS = ["--generator", GEN, "--clip", "random:tiny", "--target", "Sketch", "--batch", "2",
            "--device", "cpu", "--no-progress"]


def make_trainer(clip: ClipEnsemble, steps: int = 4) -> TextTrainer:
    cfg = TextAdaptConfig(generator=GEN, clip="random:tiny", target="Sketch", steps=steps, batch=2, lr=0.05,
                          device="cpu", save_every=100, grid_every=100, grid_samples=2)
    return TextTrainer(cfg, G=load_generator(GEN), clip=clip)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_step_checkpoints_and_resumes(tmp_path: Path, sig: int,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    clip = ClipEnsemble.from_spec("random:tiny")
    straight = run_training(make_trainer(clip), tmp_path / "straight", progress=False)
    trainer = make_trainer(clip)
    original = trainer.train_step

    def signalled_during_step_2(step: int) -> dict[str, float]:
        if step == 1:
            os.kill(os.getpid(), sig)
        return original(step)

    trainer.train_step = signalled_during_step_2
    with pytest.raises(TrainingInterrupted) as stopped:
        run_training(trainer, tmp_path / "run", progress=False)
    assert stopped.value.code == 128 + sig and stopped.value.step == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"interrupted at step 2; continue with hdn adapt text --out {tmp_path / 'run'} --resume"
    # Stopped before the first periodic checkpoint (save_every 100), yet resumable to the same result.
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = run_training(make_trainer(clip), tmp_path / "run", resume=True, progress=False)
    assert torch.equal(Domain.load(resumed).vector, Domain.load(straight).vector)


def test_sigterm_to_a_real_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = "import sys; from hyperdomainnet.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "adapt", "text", *SETTINGS, "--out", str(out), "--steps", "100000",
            "--save-every", "100000", "--log-every", "1"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 120
        while not ((out / "log.jsonl").is_file() and (out / "log.jsonl").read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert step >= 1 and err.strip().splitlines()[-1] == (
        f"interrupted at step {step}; continue with hdn adapt text --out {out} --resume")
    status, _, err = run_cli(capsys, "adapt", "text", "--out", str(out), "--resume", "--steps", str(step + 1),
                             "--no-progress")
    assert status == 0, err
    assert (out / "domain.safetensors").is_file()


def test_hypernet_training_stops_on_sigterm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hyperdomainnet.training.distributed import run_distributed
    from hyperdomainnet.training.multi_text import TextHypernetTrainer

    domains = tmp_path / "toy.txt"
    domains.write_text("Sketch - Photo\nZombie - Human\n")
    cfg = HypernetConfig(generator=GEN, domains=str(domains), clip="random:tiny", mapper_clip="random:tiny",
                         width=16, depth=2, head_depth=1, batch=2, steps=50, device="cpu", grid_samples=2,
                         save_every=1000, preview_unseen=0)
    trainer = TextHypernetTrainer(cfg, G=load_generator(GEN), clip=ClipEnsemble.from_spec("random:tiny"))
    original = trainer.train_step

    def signalled(step: int) -> dict[str, float]:
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(step)

    trainer.train_step = signalled
    with pytest.raises(TrainingInterrupted) as stopped:
        run_distributed(trainer, tmp_path / "run", trainer.dist, progress=False)
    assert stopped.value.code == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted at step 1; continue with hdn hypernet train --out {tmp_path / 'run'} --resume")
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 1


def test_commands_and_progress_labels() -> None:
    hypernet = HypernetConfig(domains="x.txt")
    assert command_and_label(hypernet) == ("hdn hypernet train", "training hypernetwork")
    assert command_and_label(TextAdaptConfig(target="Sketch")) == ("hdn adapt text", "adapting")
