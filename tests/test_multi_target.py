"""Several text targets in one run: equal to single-target runs, run directory, resume, CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.training.config import TextAdaptConfig
from hyperdomainnet.training.loop import run_training
from hyperdomainnet.training.config import read_targets_file
from hyperdomainnet.training.multi_target import target_slugs
from hyperdomainnet.training.text import TextTrainer

from conftest import kill_run_at, perturb, run_cli

GEN = "random:32:channel_max=16:n_mlp=2"
TARGETS = ["Sketch", "Zombie - Human face", "Pixar"]


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


def make_config(**changes) -> TextAdaptConfig:
    settings = dict(generator=GEN, clip="random:tiny", source="Photo", targets=TARGETS, steps=4, batch=2, precision="fp32",
                    lr=0.05, device="cpu", save_every=2, grid_every=2, log_every=1, grid_samples=2,
                    losses={"direction": 1.0, "indomain": 0.5, "offsets_l2": 0.5})
    settings.update(changes)
    return TextAdaptConfig(**settings)


def multi_trainer(clip: ClipEnsemble, **changes) -> TextTrainer:
    return TextTrainer(make_config(**changes), G=perturb(load_generator(GEN)), clip=clip)


@pytest.mark.parametrize("changes", [{}, {"targets": TARGETS[:2], "batch": 4, "micro_batch": 3, "low_memory": True},
                                     {"targets": TARGETS[1:], "parameterization": "style_offset", "noise_mode": "const"},
                                     {"targets": TARGETS[:2], "placement": "before_demod"},
                                     {"micro_batch": 4}, {"micro_batch": 2, "placement": "before_demod"}])
def test_each_target_equals_its_single_run(clip: ClipEnsemble, changes: dict) -> None:
    multi = multi_trainer(clip, **changes)
    for step in range(3):
        terms = multi.train_step(step)
    assert terms["total"] == pytest.approx(sum(v * make_config().losses[k.rpartition("/")[2]]
                                               for k, v in terms.items() if k != "total"), rel=1e-5)
    for k, (target, source) in enumerate(multi.pairs):
        single = TextTrainer(multi.single_config(k), G=perturb(load_generator(GEN)), clip=clip)
        assert (single.config.target, single.config.source) == (target, source)
        for step in range(3):
            single.train_step(step)
        expected = torch.cat([p.detach() for p in single.param.layers])
        assert expected.abs().sum() > 0
        torch.testing.assert_close(multi.params[k].vector().detach(), expected, rtol=1e-4, atol=1e-6)


def test_micro_batches_of_whole_targets_render_each_part_once(clip: ClipEnsemble) -> None:
    """A target's loss needs only its own rows: micro-batches of whole targets are back-propagated
    as they are rendered, without the extra no-gradient render of the whole batch."""
    multi = multi_trainer(clip, micro_batch=2)  # 3 targets, batch 2: parts of one target each
    calls: list[tuple[slice, bool]] = []
    adapted = multi._adapted
    multi._adapted = lambda cache, noise, part, *args: calls.append((part, torch.is_grad_enabled())) or adapted(
        cache, noise, part, *args)
    multi.train_step(0)
    assert calls == [(slice(0, 2), True), (slice(2, 4), True), (slice(4, 6), True)]
    multi.micro_batch.size = 1  # parts within a target: its pairwise terms need its whole batch first
    calls.clear()
    multi.train_step(1)
    assert [grad for _, grad in calls] == [False] * 6 + [True] * 6


def test_prompt_pairs_and_slugs() -> None:
    cfg = make_config()
    assert cfg.prompt_pairs() == [("Sketch", "Photo"), ("Zombie", "Human face"), ("Pixar", "Photo")]
    assert target_slugs(["A Sketch!", "a sketch", "?"]) == ["a-sketch", "a-sketch-2", "target"]
    with pytest.raises(ValueError, match="identical"):
        make_config(targets=["Sketch", "Photo"])


def test_run_directory_preview_and_resume(tmp_path: Path, clip: ClipEnsemble) -> None:
    straight = run_training(multi_trainer(clip), tmp_path / "a", progress=False)
    assert straight == tmp_path / "a" / "targets"
    assert sorted(p.name for p in straight.iterdir()) == ["pixar", "sketch", "zombie"]
    zombie = Domain.load(straight / "zombie" / "domain.safetensors")
    assert (zombie.metadata["target"], zombie.metadata["source"]) == ("Zombie", "Human face")
    assert zombie.metadata["config"]["targets"] == [] and zombie.kind == "domain_vector"
    assert (tmp_path / "a" / "grid.png").is_file()
    images, per_row = multi_trainer(clip).preview()
    assert images.shape[0] == (len(TARGETS) + 1) * per_row

    kill_run_at(multi_trainer(clip), tmp_path / "b")
    resumed = run_training(multi_trainer(clip), tmp_path / "b", resume=True, progress=False)
    for slug in ("sketch", "zombie", "pixar"):
        a = Domain.load(straight / slug / "domain.safetensors").vector
        b = Domain.load(resumed / slug / "domain.safetensors").vector
        assert torch.equal(a, b)
    with pytest.raises(HDNError, match="already exists"):
        run_training(multi_trainer(clip), tmp_path / "a", progress=False)


def test_per_sample_parameterisation_required(clip: ClipEnsemble) -> None:
    with pytest.raises(HDNError, match="per-sample parameterisation"):
        multi_trainer(clip, parameterization="full")


def test_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("# styles\nSketch\n\nZombie - Human\n")
    assert read_targets_file(path) == ["Sketch", "Zombie - Human"]
    path.write_text("# nothing\n")
    with pytest.raises(HDNError, match="lists no targets"):
        read_targets_file(path)
    with pytest.raises(HDNError, match="cannot read"):
        read_targets_file(tmp_path / "missing.txt")


def test_cli_several_targets_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("Zombie - Human\n")
    out = tmp_path / "run"
    base = ["adapt", "text", "--generator", GEN, "--clip", "random:tiny", "--batch", "2", "--device", "cpu",
            "--no-progress", "--out", str(out)]
    code, stdout, err = run_cli(capsys, *base, "--target", "Sketch", "--target", "Pixar", "--targets", str(listing),
                                "--steps", "2", "--save-every", "2")
    assert code == 0, err
    assert "3 targets" in stdout
    for slug in ("sketch", "pixar", "zombie"):
        assert (out / "targets" / slug / "domain.safetensors").is_file()
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(out), "--resume", "--steps", "3", "--no-progress")
    assert code == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


def stacked_layout(state: dict) -> dict:
    """A checkpoint's trainer state as runs of several targets wrote it before each target got its
    own parameterisation: the K vectors stacked in one (K, D) parameter with one Adam state."""
    names = list(state["param"])  # k.layers.l, target-major
    k = 1 + max(int(name.split(".")[0]) for name in names)
    rows = [torch.cat([state["param"][n] for n in names if n.startswith(f"{i}.")]) for i in range(k)]
    adam = state["optimizer"]["state"]
    per_target = len(names) // k
    stacked_adam = {0: {"step": adam[0]["step"], **{key: torch.stack([
        torch.cat([adam[i * per_target + l][key] for l in range(per_target)]) for i in range(k)])
        for key in ("exp_avg", "exp_avg_sq")}}}
    groups = [{**group, "params": [0]} for group in state["optimizer"]["param_groups"]]
    return {**state, "param": {"vectors": torch.stack(rows)}, "optimizer": {"state": stacked_adam, "param_groups": groups}}


def test_resume_a_run_checkpointed_with_stacked_vectors(tmp_path: Path, clip: ClipEnsemble) -> None:
    straight = run_training(multi_trainer(clip), tmp_path / "a", progress=False)
    kill_run_at(multi_trainer(clip), tmp_path / "b")
    path = tmp_path / "b" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["trainer"] = stacked_layout(checkpoint["trainer"])
    assert set(checkpoint["trainer"]["param"]) == {"vectors"}
    torch.save(checkpoint, path)
    resumed = run_training(multi_trainer(clip), tmp_path / "b", resume=True, progress=False)
    for slug in ("sketch", "zombie", "pixar"):
        assert torch.equal(Domain.load(straight / slug / "domain.safetensors").vector,
                           Domain.load(resumed / slug / "domain.safetensors").vector)
