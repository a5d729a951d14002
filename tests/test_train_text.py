"""Text-driven adaptation: trainer behaviour, resume equivalence, run directory, CLI, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperdomainnet import load_generator
from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.losses import direction_loss
from hyperdomainnet.training.config import TextAdaptConfig, build_config, load_preset, preset_names
from hyperdomainnet.training.loop import run_training
from hyperdomainnet.training.sampling import fixed_latents
from hyperdomainnet.training.text import TextTrainer

from conftest import kill_run_at, run_cli

GEN = "random:32:channel_max=16:n_mlp=2"


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


def make_config(**changes) -> TextAdaptConfig:
    settings = dict(generator=GEN, clip="random:tiny", source="Photo", target="Sketch", steps=4, batch=2,
                    lr=0.05, device="cpu", save_every=2, grid_every=2, log_every=1, grid_samples=2)
    settings.update(changes)
    return TextAdaptConfig(**settings)


def make_trainer(clip: ClipEnsemble, **changes) -> TextTrainer:
    cfg = make_config(**changes)
    return TextTrainer(cfg, G=load_generator(cfg.generator), clip=clip)


def fixed_direction_loss(trainer: TextTrainer, ws: torch.Tensor) -> float:
    enc, _ = next(iter(trainer.clip))
    with torch.no_grad():
        a = enc.encode_images(trainer.G.synthesis(ws))
        b = enc.encode_images(trainer.param.synthesize(trainer.G, ws))
    t_trg, t_src = trainer.text[enc.name][0]
    return float(direction_loss(b, a, t_trg, t_src))


def test_loss_decreases_and_only_domain_changes(clip: ClipEnsemble) -> None:
    trainer = make_trainer(clip, lr=0.05, batch=4, mixing=0.0)
    G_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    ws = fixed_latents(trainer.G, 8, seed=7, truncation=1.0, device=torch.device("cpu"))
    before = fixed_direction_loss(trainer, ws)
    for step in range(25):
        trainer.train_step(step)
    after = fixed_direction_loss(trainer, ws)
    assert after < before - 0.02, (before, after)
    for k, v in trainer.G.state_dict().items():
        assert torch.equal(v, G_before[k]), k
    assert trainer.param.regularized_tensors()[0].abs().sum() > 0


def test_losses_are_weighted_and_reported(clip: ClipEnsemble) -> None:
    trainer = make_trainer(clip, losses={"direction": 1.0, "indomain": 2.0, "offsets_l2": 0.5})
    terms = trainer.train_step(0)
    assert set(terms) == {"total", "direction", "indomain", "offsets_l2"}
    expected = terms["direction"] + 2.0 * terms["indomain"] + 0.5 * terms["offsets_l2"]
    assert terms["total"] == pytest.approx(expected, rel=1e-5)


def test_resume_gives_the_same_result(tmp_path: Path, clip: ClipEnsemble) -> None:
    straight = run_training(make_trainer(clip, steps=4), tmp_path / "a", progress=False)

    kill_run_at(make_trainer(clip, steps=4), tmp_path / "b")
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = run_training(make_trainer(clip, steps=4), tmp_path / "b", resume=True, progress=False)

    a, b = Domain.load(straight), Domain.load(resumed)
    assert torch.equal(a.vector, b.vector) and a.vector.abs().sum() > 0
    steps_logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps_logged == [1, 2, 3, 4]


def test_run_directory_and_domain_file(tmp_path: Path, clip: ClipEnsemble) -> None:
    trainer = make_trainer(clip, steps=4)
    result = run_training(trainer, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "checkpoint.pt", "log.jsonl", "grids", "grid.png",
                                               "domain.safetensors"}
    assert sorted(p.name for p in (run / "grids").iterdir()) == [
        "step_000000.png", "step_000002.png", "step_000004.png"]
    domain = Domain.load(result)
    assert domain.kind == "domain_vector" and domain.placement == "after_demod"
    assert domain.generator["name"] == GEN and domain.domain_layout == trainer.G.domain_layout
    assert domain.metadata["target"] == "Sketch" and domain.metadata["source"] == "Photo"
    assert domain.metadata["clip"] == trainer.clip.spec and domain.metadata["steps"] == 4
    assert "library_version" in domain.metadata
    torch.testing.assert_close(domain.vector, torch.cat([t.reshape(-1) for t in trainer.param.regularized_tensors()]))
    with pytest.raises(HDNError, match="already exists"):
        run_training(make_trainer(clip), run, progress=False)


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path: Path, clip: ClipEnsemble,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = make_trainer(clip, steps=4)
    original = trainer.target_terms

    def poisoned(src, trg, targets):
        terms = original(src, trg, targets)
        if trainer.optimizer.state and len(loop_steps) >= 2:
            terms["direction"] = terms["direction"] * float("nan")
        loop_steps.append(1)
        return terms

    loop_steps: list[int] = []
    monkeypatch.setattr(trainer, "target_terms", poisoned)
    with pytest.raises(HDNError, match="non-finite at step 3.*step 2"):
        run_training(trainer, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and torch.isfinite(state["trainer"]["param"][next(iter(state["trainer"]["param"]))]).all()
    assert not (tmp_path / "run" / "domain.safetensors").exists()


@pytest.mark.parametrize("name", preset_names("text"))
def test_text_presets_are_valid(name: str) -> None:
    cfg = build_config(TextAdaptConfig, load_preset(name, "text"))
    assert cfg.steps > 0 and cfg.losses["direction"] == 1.0


def test_presets_name_their_command() -> None:
    assert set(preset_names("text")) == {f"td_single_{k}" for k in ("ffhq", "car", "cat", "church", "horse")}
    with pytest.raises(HDNError, match="is for `hdn adapt image`"):
        load_preset("im2im_single", "text")


@pytest.mark.parametrize("changes,message", [
    ({"target": "  "}, "target prompt is empty"),
    ({"target": "photo"}, "identical"),
    ({"losses": {"directoin": 1.0}}, "unknown loss"),
    ({"losses": {"indomain": 1.0}, "batch": 1}, "batch 2"),
    ({"steps": 0}, "steps"),
])
def test_bad_settings(changes: dict, message: str) -> None:
    base = make_config().model_dump()
    base.update(changes)
    with pytest.raises(HDNError, match=message):
        build_config(TextAdaptConfig, base)


def test_cli_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["adapt", "text", "--generator", "random:64:channel_max=32:n_mlp=2", "--clip", "random:tiny",
            "--source", "Photo", "--target", "3D render in the style of Pixar", "--steps", "5", "--batch", "2",
            "--out", str(out), "--device", "cpu", "--save-every", "5", "--no-progress",
            "--loss", "direction=1", "--loss", "indomain=0.5"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "domain.safetensors" in stdout
    for name in ("config.yaml", "checkpoint.pt", "log.jsonl", "grid.png", "domain.safetensors"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5] and {"direction", "indomain", "total"} <= set(log[0])
    domain = Domain.load(out / "domain.safetensors")
    assert domain.metadata["config"]["losses"] == {"direction": 1.0, "indomain": 0.5}
    # Extending a finished run: --resume with more steps continues from the stored config.
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(out), "--resume", "--steps", "6", "--no-progress")
    assert code == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize("extra,message", [
    (["--target", ""], "target prompt is empty"),
    (["--target", "Photo"], "identical"),
    (["--target", "x", "--clip", "ViT-Q/99"], "ViT-Q/99"),
    (["--target", "x", "--generator", "/no/such.pt"], "not an existing file"),
    (["--target", "x", "--preset", "nope"], "unknown preset"),
    (["--target", "x", "--betas", "0.9"], "--betas"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                   message: str) -> None:
    base = ["adapt", "text", "--generator", GEN, "--clip", "random:tiny", "--steps", "1", "--out",
            str(tmp_path / "r"), "--no-progress", "--device", "cpu"]
    code, _, err = run_cli(capsys, *base, *extra)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r" / "domain.safetensors").exists()


def test_cli_resume_without_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "adapt", "text", "--out", str(tmp_path / "none"), "--resume")
    assert code == 1 and "nothing to resume" in err


@pytest.mark.parametrize("parameterization", ["style_offset", "csep_mult", "full"])
def test_other_parameterizations_train_and_save(tmp_path: Path, clip: ClipEnsemble, parameterization: str) -> None:
    trainer = make_trainer(clip, steps=2, parameterization=parameterization, save_every=2, grid_every=2)
    result = run_training(trainer, tmp_path / parameterization, progress=False)
    if parameterization == "full":
        adapted = load_generator(result)
        assert result.name == "generator.pt" and adapted.domain_layout == trainer.G.domain_layout
        assert not torch.equal(adapted.convs[0].conv.weight, trainer.G.convs[0].conv.weight)
    else:
        domain = Domain.load(result)
        assert domain.kind == parameterization


def test_adaptive_layer_selection_trains_only_k_layers(clip: ClipEnsemble) -> None:
    trainer = make_trainer(clip, auto_layer_k=2, auto_layer_iters=1, auto_layer_batch=2)
    trainer.train_step(0)
    changed = [bool(t.abs().sum() > 0) for t in trainer.param.regularized_tensors()]
    assert sum(changed) == 2


@pytest.mark.parametrize(("parameterization", "ratio"), [("domain_vector", 1.0), ("full", 0.8)])
def test_adam_settings_and_full_fine_tuning_scaling(clip: ClipEnsemble, parameterization: str, ratio: float) -> None:
    trainer = make_trainer(clip, parameterization=parameterization, betas=(0.5, 0.9), weight_decay=0.01, seed=3)
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.05 * ratio) and group["weight_decay"] == 0.01
    assert group["betas"] == pytest.approx((0.5 ** ratio, 0.9 ** ratio))
    assert torch.equal(trainer.rng.get_state(), torch.Generator().manual_seed(3).get_state())
    assert not trainer.scaler.is_enabled()  # fp32
