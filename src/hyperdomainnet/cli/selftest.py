"""``hdn selftest``: the README's offline quick start, run through this ``hdn`` in a temporary folder
on tiny random-weight models, one line per step and a verdict (exit 0 when every step passed)."""
from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import typer

from .app import app, main

GENERATOR = "random:32:channel_max=16:n_mlp=2"   # the real architecture, 32 px and 16 channels
CLIP = "random:tiny"
II2S_FAST = ("--lpips-random-backbone", "--pnorm-samples", "256")
REFERENCE = "ref.png"


@dataclass(frozen=True)
class Step:
    """One quick-start command: ``hdn`` + ``argv`` (paths relative to the work folder), passed when
    it exits 0 and every file of ``outputs`` exists."""

    name: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...] = ()


def quick_start() -> list[Step]:
    """The README's offline quick start, in its order, on the tiny models."""
    sketch = "runs/sketch/domain.safetensors"
    hypernet = "runs/hdn/hypernet.safetensors"
    return [
        Step("adapt text", ("adapt", "text", "--generator", GENERATOR, "--clip", CLIP, "--source", "Photo", "--target",
                            "Sketch", "--steps", "2", "--batch", "2", "--out", "runs/sketch"),
             (sketch, "runs/sketch/grid.png")),
        Step("info", ("info", sketch)),
        Step("generate", ("generate", "--domain", sketch, "--n", "4", "--out", "gen"), ("gen/grid.png",)),
        Step("prune", ("prune", "--domain", sketch, "--keep", "0.2", "--out", "sketch_sparse.safetensors"),
             ("sketch_sparse.safetensors",)),
        Step("eval", ("eval", "--domain", sketch, "--clip", CLIP, "--n", "4", "--lpips-random-backbone", "--out",
                      "eval/metrics.json"), ("eval/metrics.json", "eval/metrics.md")),
        Step("adapt image", ("adapt", "image", "--generator", GENERATOR, "--clip", CLIP, "--image", REFERENCE, "--steps",
                             "2", "--batch", "2", "--invert-steps", "2", *II2S_FAST, "--out", "runs/ref"),
             ("runs/ref/domain.safetensors",)),
        Step("invert", ("invert", REFERENCE, "--generator", GENERATOR, "--steps", "2", *II2S_FAST, "--out", "inv"),
             ("inv/ref-latent.safetensors",)),
        Step("stylize", ("stylize", REFERENCE, "--domain", "runs/ref/domain.safetensors", "--generator", GENERATOR,
                         "--steps", "2", *II2S_FAST, "--out", "styl"), ("styl/grid.png",)),
        Step("hypernet train", ("hypernet", "train", "--generator", GENERATOR, "--clip", CLIP, "--mapper-clip", CLIP,
                                "--domains", "train-20", "--width", "16", "--depth", "2", "--head-depth", "1",
                                "--steps", "2", "--batch", "2", "--out", "runs/hdn"), (hypernet,)),
        Step("hypernet eval", ("hypernet", "eval", "--hypernet", hypernet, "--clip", CLIP, "--samples", "2",
                               "--unseen", "test-close", "--out", "heval"), ("heval/metrics.json",)),
        Step("generate", ("generate", "--hypernet", hypernet, "--text", "Anime painting", "--text", "Pixar", "--n", "2",
                          "--out", "hgen"), ("hgen/grid.png",)),
        Step("export", ("export", GENERATOR, "--out", "g.pt"), ("g.pt",)),
        Step("models", ("models",)),
    ]


@contextmanager
def _offline_in(folder: Path) -> Iterator[None]:
    """Inside: the working directory is ``folder``, the cache ``folder/home``, and the hub offline."""
    saved_env = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "HDN_HOME")}
    saved_cwd = os.getcwd()
    os.environ.update(HF_HUB_OFFLINE="1", HDN_HOME=str(folder / "home"))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_reference() -> None:
    import torch

    from ..images import save_image

    save_image(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1, REFERENCE)


def run_step(step: Step) -> str | None:
    """Run one step with its output captured: None when it passed, else why not (one line)."""
    captured = io.StringIO()
    try:
        with redirect_stdout(captured), redirect_stderr(captured):
            code = main(list(step.argv))
    except Exception as exc:  # a bug, not a user error: the verdict must still come
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    errors = [line for line in captured.getvalue().splitlines() if line.startswith("error:")]
    if code != 0:
        return errors[-1] if errors else f"exit status {code}"
    missing = [name for name in step.outputs if not Path(name).is_file()]
    return f"did not write {', '.join(missing)}" if missing else None


@app.command()
def selftest() -> None:
    """Check this installation offline: the README's quick start on tiny random models in a temporary
    folder (about a minute on two CPU cores), one line per step, then a verdict; exit 1 if a step fails."""
    steps = quick_start()
    failed: list[str] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hdn-selftest-") as folder, _offline_in(Path(folder)):
        typer.echo(f"hdn selftest: {len(steps)} quick-start commands on random-weight models in {folder} (offline)")
        _write_reference()
        for number, step in enumerate(steps, 1):
            began = time.perf_counter()
            problem = run_step(step)
            took = f"{time.perf_counter() - began:5.1f} s"
            label = f"{number:2d}/{len(steps)} hdn {step.name}"
            typer.echo(f"  ok    {label:24s} {took}" if problem is None else f"  FAIL  {label:24s} {took}  {problem}")
            if problem is not None:
                failed.append(step.name)
    total = time.perf_counter() - start
    if failed:
        typer.echo(f"selftest failed: {len(failed)} of {len(steps)} steps ({', '.join(failed)}) in {total:.0f} s",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"selftest passed: {len(steps)} of {len(steps)} steps in {total:.0f} s")
