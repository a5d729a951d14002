"""Training options derived from the config models, settings layers, output checks, `hdn presets`."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from hyperdomainnet.cli import app
from hyperdomainnet.cli.train_options import run_config, training_command
from hyperdomainnet.errors import ConfigError
from hyperdomainnet.training.config import (CONFIG_MODELS, PRESET_COMMANDS, TextAdaptConfig, build_config,
                                            load_preset, option_name, preset_info, preset_names, resolve_preset)

from conftest import run_cli

GEN = "random:32:channel_max=16:n_mlp=2"
TINY = ["--generator", GEN, "--clip", "random:tiny", "--device", "cpu", "--no-progress"]
COMMANDS = {("adapt", "text"): "text", ("adapt", "image"): "image", ("hypernet", "train"): "multi_text"}
# The official configs (MACderRu/HyperDomainNet configs/*.yaml): iter_num and exp.seed.
OFFICIAL = {"td_single_ffhq": (300, 12), "td_single_car": (400, 0), "td_single_cat": (400, 12),
            "td_single_church": (100, 0), "td_single_horse": (150, 12), "im2im_single": (100, 0),
            "td_multiple": (10000, 12), "td_multiple_base": (800, 12), "im2im_multiple_base": (800, 12)}


def click_command(*path: str):
    command = get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", list(COMMANDS))
def test_every_setting_is_an_option_showing_its_default(path: tuple[str, ...]) -> None:
    command = click_command(*path)
    model = CONFIG_MODELS[COMMANDS[path]]
    options = {opt: p for p in command.params for opt in p.opts}
    for name, field in model.model_fields.items():
        param = options[option_name(name, field)]
        assert "default" in param.help, (name, param.help)
    for param in command.params:  # the command's own options too
        assert param.required or param.show_default or "default" in (param.help or ""), param.name


def test_help_shows_defaults_and_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    help_text = {p.opts[0]: p.help for p in click_command("adapt", "text").params}
    assert help_text["--lr"] == "Adam learning rate (default 0.1; > 0)."
    assert help_text["--mixing"].endswith("(default 0.9; in [0, 1]).")
    assert help_text["--loss"].endswith("(default direction=1.0).")
    assert "(default 1000; >= 0)" in {p.opts[0]: p.help for p in click_command("adapt", "image").params}[
        "--invert-steps"]


def test_a_new_field_is_a_new_option(tmp_path: Path) -> None:
    """Adding a setting to a config model is one line: its option, help and parsing follow."""
    from pydantic import Field

    class Extended(TextAdaptConfig):
        ema_decay: float = Field(0.99, ge=0, le=1, description="EMA decay of the domain vector")

    group, seen = typer.Typer(), {}

    @training_command(group, "run", Extended, {"text": None})
    def run(cfg: Extended, out: Path, resume: bool, progress: bool) -> None:
        seen["cfg"] = cfg

    @group.command("other")
    def other() -> None:  # a second command keeps `run` a named subcommand
        ...

    result = CliRunner().invoke(group, ["run", "--out", str(tmp_path / "r"), "--target", "Sketch", "--ema-decay",
                                        "0.5", "--loss", "indomain=2", "--betas", "0.8,0.9"])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.ema_decay, cfg.losses, cfg.betas) == (0.5, {"direction": 1.0, "indomain": 2.0}, (0.8, 0.9))
    help_text = {p.opts[0]: p.help for p in get_command(group).commands["run"].params}
    assert help_text["--ema-decay"] == "EMA decay of the domain vector (default 0.99; in [0, 1])."


def test_loss_option_updates_the_preset(tmp_path: Path) -> None:
    def settings(**updates) -> dict:
        cfg = run_config(TextAdaptConfig, "text", tmp_path / "r", resume=False, force=False,
                         preset="td_single_car", config_file=None, settings=updates)
        return cfg.losses

    assert settings(losses={"indomain": "2"}) == {"direction": 1.0, "indomain": 2.0}
    assert settings(losses={"indomain": "0", "global": "0.5"}) == {"direction": 1.0, "indomain": 0.0, "global": 0.5}
    assert settings() == {"direction": 1.0, "indomain": 1.5}
    # Without a preset the options update the model's default losses.
    cfg = run_config(TextAdaptConfig, "text", tmp_path / "r", resume=False, force=False, preset=None,
                     config_file=None, settings={"target": "Sketch", "losses": {"indomain": "0.5"}})
    assert cfg.losses == {"direction": 1.0, "indomain": 0.5}


def test_preset_with_one_loss_changed_trains_and_saves_the_merged_losses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "adapt", "text", "--preset", "td_single_ffhq", "--loss", "indomain=1.5",
                           "--steps", "1", "--batch", "2", "--out", str(out), *TINY)
    assert code == 0, err
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["losses"] == {"direction": 1.0, "indomain": 1.5}
    assert stored["target"] == "3D Render in the Style of Pixar" and stored["seed"] == 12
    log = (out / "log.jsonl").read_text()
    assert '"direction"' in log and '"indomain"' in log


@pytest.mark.parametrize("extra,message", [
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "finite"),
    (["--loss", "direction=nan"], "finite"),
    (["--mixing", "-inf"], "--mixing"),
    (["--betas", "5,5"], "--betas"),
    (["--betas", "0.9,1"], "less than 1"),
    (["--loss", "indomain"], "NAME=VALUE"),
    (["--loss", "indomain=abc"], "--loss"),
])
def test_bad_values_are_refused_in_one_line_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "adapt", "text", "--target", "Sketch", "--out", str(out), *TINY, *extra)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_yaml_nan_in_a_config_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text("target: Sketch\nlosses: {direction: .nan}\n")
    code, _, err = run_cli(capsys, "adapt", "text", "--config", str(tmp_path / "c.yaml"), "--out",
                           str(tmp_path / "run"), *TINY)
    assert code == 1 and "finite" in err and "losses[direction]" in err


def test_output_directory_is_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    args = ["adapt", "text", "--target", "Sketch", "--steps", "1", "--batch", "2", *TINY]
    code, _, err = run_cli(capsys, *args, "--out", str(busy))
    assert code == 1 and "--force" in err and err.count("\n") == 1
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        code, _, err = run_cli(capsys, *args, "--out", str(out))
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    code, _, err = run_cli(capsys, *args, "--out", str(busy), "--force")
    assert code == 0, err
    assert (busy / "domain.safetensors").is_file() and (busy / "notes.txt").read_text() == "mine"


def test_resume_takes_the_stored_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stored = build_config(TextAdaptConfig, load_preset("td_single_car"))
    (out / "config.yaml").write_text(yaml.safe_dump(stored.model_dump(mode="json")))

    def resume(**settings):
        return run_config(TextAdaptConfig, "text", out, resume=True, force=False, preset=None, config_file=None,
                          settings=settings)

    assert resume(steps=500).steps == 500 and resume().losses == stored.losses
    assert resume(lr=0.02, losses={"indomain": "1.5"}) == stored  # repeating the stored values is fine
    with pytest.raises(ConfigError, match=r"only --steps may change \(--lr, --loss differ\)"):
        resume(lr=0.5, losses={"indomain": "1"})


def test_hypernet_names_the_mapper_clip_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "toy.txt").write_text("Anime painting - Photo\nSketch - Photo\n")
    code, _, err = run_cli(capsys, "hypernet", "train", "--domains", str(tmp_path / "toy.txt"), "--mapper-clip",
                           "file:tiny:/no/such/clip.pt", "--width", "16", "--depth", "2", "--head-depth", "1",
                           "--batch", "2", "--steps", "1", "--out", str(tmp_path / "run"), *TINY)
    assert code == 1 and err.startswith("error: --mapper-clip file:tiny:/no/such/clip.pt:") and err.count("\n") == 1


def test_presets_are_listed_with_their_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(preset_names())
    for name, line in zip(preset_names(), lines):
        trainer, description = preset_info(name)
        assert line.split()[0] == name and PRESET_COMMANDS[trainer] in line and line.endswith(description)
        assert description


@pytest.mark.parametrize("name", preset_names())
def test_presets_show_the_resolved_settings(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "presets", "show", name)
    assert code == 0
    shown = yaml.safe_load(out)
    trainer, _ = preset_info(name)
    model = CONFIG_MODELS[trainer]
    inputs = {"image": "ref.png"} if trainer == "image" else {"images": "refs.txt"} if trainer == "multi_image" else {}
    cfg = build_config(model, load_preset(name), inputs)
    assert shown == {**cfg.model_dump(mode="json"), **{k: shown[k] for k in inputs}}
    assert set(shown) == set(model.model_fields)
    assert resolve_preset(name) == shown


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_presets_named_after_official_configs_match_their_steps_and_seed(name: str) -> None:
    iter_num, seed = OFFICIAL[name]
    settings = load_preset(name)
    assert (settings["steps"], settings["seed"]) == (iter_num + 1, seed)  # the research loop runs iter_num + 1


def test_show_refuses_unknown_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "presets", "show", "td_single_dog")
    assert code == 1 and "unknown preset 'td_single_dog'" in err and err.count("\n") == 1
