"""The shared training loop: run directory, resumable checkpoints, logging, progress, previews.

Run directory layout::

    config.yaml        the configuration as run
    checkpoint.pt      trainer state at the last saved step (atomic; resumable)
    log.jsonl          one JSON line per logged step: {"step", "total", <loss terms>, "time"}
    grids/step_NNNNNN.png, grid.png   source row(s) above adapted row(s) on fixed seeds
    <result file>      e.g. domain.safetensors (trainer-specific)

A run resumed with ``resume=True`` continues from ``checkpoint.pt`` and, because the trainer's
RNG, optimiser and trainable state are all checkpointed, ends with the same result as an
uninterrupted run with the same configuration.

SIGINT (Ctrl-C) and SIGTERM (pre-emption) stop a run cleanly: the current step finishes, the
checkpoint of that step is written atomically, one line says how to continue, and
``TrainingInterrupted`` (a ``SystemExit`` with status 128 + signal number: 130 / 143) ends the
process. A second signal stops at once (``KeyboardInterrupt``; the last checkpoint stays).
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
import yaml

from ..atomic import atomic_path, full_disk_error, is_full_disk, remove_stale_temporaries
from ..errors import ConfigError, FileFormatError, HDNError
from ..images import save_grid
from ..progress import progress_bar
from ..ranges import finite_json
from ..torchfile import read_torch_file
from .config import CONFIG_NAME, HypernetConfig, ImageAdaptConfig, TextAdaptConfig, TrainConfig
from .run_folder import read_log, run_folder_lock

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


class NonFiniteLoss(Exception):
    """Raised by a trainer before its optimiser step when the loss is NaN or infinite."""

    def __init__(self, terms: dict[str, float]) -> None:
        super().__init__(", ".join(f"{k}={v:.4g}" for k, v in terms.items()))
        self.terms = terms


class TrainingInterrupted(SystemExit):
    """A run stopped by a signal after writing its checkpoint; the exit status is 128 + signal."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(128 + signum)
        self.signum, self.step = signum, step


class StopSignals:
    """While active (``stop_signals()``), the first SIGINT/SIGTERM only records its number in
    ``signum`` for the loop to act on between steps; a second one raises ``KeyboardInterrupt``."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install ``StopSignals`` for SIGINT and SIGTERM (main thread only; elsewhere signals keep
    their handlers and ``signum`` stays None); the previous handlers come back on exit."""
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop.handle) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


COMMANDS: dict[type[TrainConfig], tuple[str, str]] = {
    TextAdaptConfig: ("hdn adapt text", "adapting"), ImageAdaptConfig: ("hdn adapt image", "adapting"),
    HypernetConfig: ("hdn hypernet train", "training hypernetwork")}


def command_and_label(config: TrainConfig) -> tuple[str, str]:
    """The command that runs ``config``'s trainer and its progress label."""
    return next((v for cls, v in COMMANDS.items() if isinstance(config, cls)), ("hdn", "training"))


class Trainer(Protocol):
    """What the loop needs from a trainer (text, image, multi-domain)."""

    config: TrainConfig  # with the resolved precision
    result_name: str
    device: torch.device
    precision: str  # resolved once, when the trainer was built
    auto_precision: bool  # resolved from "auto" (the loop says to what)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns the loss terms (``total`` included)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: trainable tensors, optimiser, RNG."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def preview(self) -> tuple[torch.Tensor, int]:
        """Preview images (N, 3, H, W) in [−1, 1] and the number per grid row; ``preview_rows``,
        where a trainer has it, names the rows."""

    def save_result(self, path: Path) -> None:
        """Write the shareable result (domain file, generator, hypernetwork) atomically."""


class MetricLogger:
    """JSONL log, plus optional TensorBoard and Weights & Biases mirrors."""

    def __init__(self, run_dir: Path, config: TrainConfig, resume_step: int) -> None:
        self.path = run_dir / LOG
        self._truncate_after(resume_step)
        self.tb = self.wandb = None
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("TensorBoard logging needs the tensorboard package: "
                                  "pip install tensorboard") from None
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if config.wandb:
            try:
                import wandb
            except ImportError:
                raise ConfigError("W&B logging needs the wandb package: pip install wandb") from None
            self.wandb = wandb.init(project="hyperdomainnet", name=run_dir.name, config=config.model_dump(),
                                    resume="allow")

    def _truncate_after(self, step: int) -> None:
        """Drop records of steps past the checkpoint a run resumes from (they will be re-run) and
        lines that are not records (torn by a full disk or a kill)."""
        if not self.path.exists():
            return
        kept = [record for record in read_log(self.path) if record["step"] <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(finite_json(record), allow_nan=False) + "\n" for record in kept))

    def log(self, step: int, terms: dict[str, float]) -> None:
        """Append one record; a non-finite term is written as null (the file stays valid JSON)."""
        record = finite_json({"step": step, **{k: float(v) for k, v in terms.items()}, "time": time.time()})
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record, allow_nan=False) + "\n")
        except OSError as exc:
            raise (full_disk_error(self.path) if is_full_disk(exc) else exc) from None
        if self.tb is not None:
            for key, value in terms.items():
                self.tb.add_scalar(f"loss/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"loss/{k}": v for k, v in terms.items()}, step=step)

    def log_image(self, step: int, path: Path) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.log({"preview": wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def save_checkpoint(run_dir: Path, step: int, trainer: Trainer) -> None:
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        torch.save({"step": step, "config": trainer.config.model_dump(mode="json"),
                    "trainer": trainer.state_dict()}, tmp)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileFormatError(f"nothing to resume: {path} does not exist; start the run without --resume")
    return read_torch_file(path, "run checkpoint (if it is corrupt, start a new run in another directory)")


def check_new_run(run_dir: Path, result_name: str) -> None:
    """Refuse to overwrite an existing run by accident."""
    for name in (CHECKPOINT, result_name):
        if (run_dir / name).exists():
            raise ConfigError(f"{run_dir / name} already exists; pass --resume to continue that run "
                              "or choose another --out directory")


def save_preview(trainer: Trainer, run_dir: Path, step: int, logger: MetricLogger) -> Path:
    images, nrow = trainer.preview()
    path = run_dir / "grids" / f"step_{step:06d}.png"
    save_grid(images, path, nrow=nrow, rows=getattr(trainer, "preview_rows", None) if trainer.config.captions else None)
    logger.log_image(step, path)
    return path


def run_training(trainer: Trainer, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 agree: Callable[[bool], bool] = bool) -> Path:
    """Train to ``config.steps`` (continuing from ``checkpoint.pt`` when resuming); return the result path.

    ``agree(stop)`` turns this process's stop request into the decision of every process of a
    distributed run (one process: itself). The run holds the folder's exclusive lock throughout:
    a second run into the same folder refuses, naming the holder."""
    run_dir = Path(run_dir)
    with run_folder_lock(run_dir):
        return _train_locked(trainer, run_dir, resume, progress, agree)


def _train_locked(trainer: Trainer, run_dir: Path, resume: bool, progress: bool,
                  agree: Callable[[bool], bool]) -> Path:
    """``run_training`` while holding the run folder's lock."""
    config = trainer.config
    command, label = command_and_label(config)
    start = 0
    if resume:
        state = load_checkpoint(run_dir)
        trainer.load_state_dict(state["trainer"])
        start = int(state["step"])
    else:
        check_new_run(run_dir, trainer.result_name)
    remove_stale_temporaries(run_dir)
    if trainer.auto_precision:
        print(f"precision: {trainer.precision} ({'native' if trainer.precision == 'bf16' else 'no native bf16'} "
              f"on {trainer.device.type})", file=sys.stderr, flush=True)
    with atomic_path(run_dir / CONFIG_NAME) as tmp:
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    logger = MetricLogger(run_dir, config, start)
    bar = progress_bar(config.steps, label, unit="step", enabled=progress, initial=start)
    try:
        with stop_signals() as stop:
            if start == 0:
                save_preview(trainer, run_dir, 0, logger)
            for step in range(start, config.steps):
                try:
                    terms = trainer.train_step(step)
                except NonFiniteLoss as exc:
                    logger.log(step + 1, exc.terms)
                    last = load_checkpoint(run_dir)["step"] if (run_dir / CHECKPOINT).exists() else None
                    kept = (f"the last good checkpoint (step {last}) is kept in {run_dir}; resume with --resume "
                            "and a lower learning rate" if last is not None else "no checkpoint was written yet")
                    raise HDNError(f"loss became non-finite at step {step + 1} ({exc}); training stopped; {kept}") from None
                done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{terms['total']:.4f}")
                if done % config.log_every == 0 or done == config.steps:
                    logger.log(done, terms)
                stopping = agree(stop.signum is not None) and done < config.steps
                if done % config.grid_every == 0 and done != config.steps and not stopping:
                    save_preview(trainer, run_dir, done, logger)
                if done % config.save_every == 0 or done == config.steps or stopping:
                    save_checkpoint(run_dir, done, trainer)
                if stopping:
                    bar.close()
                    print(f"interrupted at step {done}; continue with {command} --out {run_dir} --resume",
                          file=sys.stderr, flush=True)
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, done)
        final = save_preview(trainer, run_dir, config.steps, logger)
        with atomic_path(run_dir / "grid.png") as tmp:
            tmp.write_bytes(final.read_bytes())
        result = run_dir / trainer.result_name
        trainer.save_result(result)
        return result
    finally:
        bar.close()
        logger.close()
