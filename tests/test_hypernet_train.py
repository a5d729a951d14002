"""HyperDomainNet training: domain lists, the step's samplers, quirks, loss decrease, resume, CLI
(text and image variants, train and eval), bad input. Tiny random models throughout."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from conftest import kill_run_at
from hyperdomainnet import load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.clip import ClipEnsemble, load_clip
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.hypernet.domains import (BUILTIN_LISTS, builtin_path, load_domain_list, load_image_list,
                                             parse_domain_list)
from hyperdomainnet.hypernet.model import prompt_embeddings
from hyperdomainnet.training.config import HypernetConfig, build_config, load_preset
from hyperdomainnet.training.loop import run_training
from hyperdomainnet.training.multi_text import TextHypernetTrainer

GEN = "random:32:channel_max=16:n_mlp=2"
TINY_NET = ["--width", "16", "--depth", "2", "--head-depth", "1"]
TOY = "Sketch - Photo\nAnime Drawing - Photo\nZombie - Human\n"


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return load_generator(GEN)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.txt"
    path.write_text(TOY)
    return path


def make_trainer(G, clip, domains: Path | str, **changes) -> TextHypernetTrainer:
    settings = dict(generator=GEN, domains=str(domains), clip="random:tiny", mapper_clip="random:tiny", width=16,
                    depth=2, head_depth=1, batch=4, steps=4, lr=1e-3, device="cpu", grid_samples=2,
                    save_every=2, grid_every=2, log_every=1, preview_unseen=1)
    settings.update(changes)
    return TextHypernetTrainer(HypernetConfig(**settings), G=G, clip=clip)


# ----- domain lists -------------------------------------------------------------------------------
def test_builtin_lists_ship_with_the_package_and_test_lists_are_held_out() -> None:
    lists = {name: load_domain_list(name) for name in BUILTIN_LISTS}
    assert all(builtin_path(name).is_file() for name in BUILTIN_LISTS)
    twenty = lists["train-20"]
    assert len(twenty) == 20 and [p.source for p in twenty.pairs].count("Photo") == 10 \
        and [p.source for p in twenty.pairs].count("Human") == 10
    assert len(lists["train-large"]) >= 1000
    trained = {t.lower() for name in ("train-20", "train-large") for t in lists[name].targets}
    for name in ("test-close", "test-far"):
        held_out = {t.lower() for t in lists[name].targets}
        assert len(held_out) >= 10 and not held_out & trained, name
    assert not {t.lower() for t in lists["test-close"].targets} & {t.lower() for t in lists["test-far"].targets}


def test_domain_list_parsing_comments_duplicates_and_hash() -> None:
    text = "# styles\n\nSketch - Photo\n  Spider - Man - Human \nSketch - Photo\n"
    parsed = parse_domain_list(text, "x")
    assert [(p.target, p.source) for p in parsed.pairs] == [("Sketch", "Photo"), ("Spider - Man", "Human")]
    assert parsed.sources == ["Photo", "Human"]
    assert parsed.sha256 == parse_domain_list("Sketch - Photo\nSpider - Man - Human\n").sha256
    assert parsed.sha256 != parse_domain_list("Spider - Man - Human\nSketch - Photo\n").sha256


@pytest.mark.parametrize("text, message", [
    ("", "has no domains"),
    ("# only a comment\n", "has no domains"),
    ("Sketch Photo\n", "line 1"),
    ("Sketch - \n", "line 1"),
    ("A - Photo\nPhoto - photo\n", "line 2: target and source"),
    ("Sketch - Photo\nSketch - Human\n", "two sources"),
])
def test_bad_domain_lists_raise_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(HDNError, match=message) as info:
        load_domain_list(path)
    assert "\n" not in str(info.value)


def test_unknown_builtin_and_missing_images_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HDNError, match="neither a file nor a built-in list.*train-20"):
        load_domain_list("train-21")
    (tmp_path / "images.txt").write_text("missing.png\n")
    with pytest.raises(HDNError, match="missing.png does not exist"):
        load_image_list(tmp_path / "images.txt")


def test_text_presets_refuse_images() -> None:
    with pytest.raises(HDNError, match="either --domains .* or --images"):
        build_config(HypernetConfig, load_preset("td_multiple"), {"images": "refs.txt"})


# ----- the training step ----------------------------------------------------------------------------
def test_plan_draws_mixed_resampled_cropped_batches(G, clip, toy: Path) -> None:
    trainer = make_trainer(G, clip, toy, batch=6)
    base = trainer.inputs
    seen = set()
    for _ in range(5):
        plan = trainer.plan()
        seen.update(plan.domains.tolist())
        # convex hull: unit-norm mixtures of the drawn domains' inputs, rows of A on the simplex
        assert torch.allclose(plan.mixing.sum(1), torch.ones(6), atol=1e-5) and (plan.mixing >= 0).all()
        assert torch.allclose(plan.inputs, F.normalize(plan.mixing @ base[plan.domains], dim=-1), atol=1e-5)
        assert len(set(plan.pair_ids)) == 6
        # resampling: each target template embedding within the cosine bound of the mixed one
        targets, _ = trainer.text["random:tiny"]
        mixed = F.normalize(torch.einsum("ij,jtk->itk", plan.mixing, targets[plan.domains]), dim=-1)
        cos = (plan.text["random:tiny"][0] * mixed).sum(-1)
        assert cos.min() >= 0.95 - 1e-5 and cos.max() <= 1 + 1e-5 and cos.min() < 0.999
        # one crop of side ⌊0.8·32⌋ for G_A and G_B, inside the image; shared noise
        assert trainer.crop_side == 25 and plan.crop_src == plan.crop_trg
        assert all(0 <= o <= 32 - 25 for o in plan.crop_trg) and plan.noise_src == plan.noise_trg
    assert seen == {0, 1, 2}
    official = make_trainer(G, clip, toy, batch=6, quirks="official").plan()
    assert official.crop_src != official.crop_trg or official.noise_src != official.noise_trg
    assert official.pair_ids is None


def test_plan_without_augmentation_uses_plain_domains(G, clip, toy: Path) -> None:
    trainer = make_trainer(G, clip, toy, convex_hull=False, resample=False, crop=1.0)
    plan = trainer.plan()
    assert plan.mixing is None and plan.crop_trg is None and plan.pair_ids == plan.domains.tolist()
    assert torch.equal(plan.inputs, trainer.inputs[plan.domains])
    targets, sources = trainer.text["random:tiny"]
    assert torch.equal(plan.text["random:tiny"][0], targets[plan.domains])
    assert torch.equal(plan.text["random:tiny"][1], sources[trainer.source_index[plan.domains]])


def test_official_quirks_drop_encoders_and_normalisation(G, toy: Path) -> None:
    other = load_clip("random:tiny")
    other.name = "random:other"
    pair = ClipEnsemble([(load_clip("random:tiny"), 1.0), (other, 1.0)])
    corrected = make_trainer(G, pair, toy)
    assert [e.name for e, _ in corrected.loss_encoders] == ["random:tiny", "random:other"] and corrected.normalize
    official = make_trainer(G, pair, toy, quirks="official")
    assert [e.name for e, _ in official.loss_encoders] == ["random:tiny"] and not official.normalize
    base = make_trainer(G, pair, toy, quirks="official", convex_hull=False, resample=False, crop=1.0)
    assert len(base.loss_encoders) == 2 and base.normalize
    terms = official.train_step(0)
    assert set(terms) == {"total", "direction", "tt_direction"}


def test_tt_direction_masks_same_domain_pairs_unless_official(G, clip, tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("Sketch - Photo\n")
    plain = dict(convex_hull=False, resample=False, crop=1.0)
    masked = make_trainer(G, clip, one, **plain).train_step(0)
    assert masked["tt_direction"] == 0.0
    unmasked = make_trainer(G, clip, one, quirks="official", **plain).train_step(0)
    assert unmasked["tt_direction"] == pytest.approx(1.0)  # zero text deltas: 1 − cos(·, 0) per pair


def test_loss_decreases_on_fixed_batches(G, clip, toy: Path) -> None:
    trainer = make_trainer(G, clip, toy, batch=6, lr=1e-3, mixing=0.0, noise_mode="const",
                           losses={"direction": 1.0, "tt_direction": 0.4, "offsets_l2": 0.1})
    fixed = [trainer.plan() for _ in range(3)]  # one batch is too noisy a yardstick with a random CLIP

    def measured() -> float:
        with torch.no_grad():
            return sum(float(trainer.losses(plan)["direction"]) for plan in fixed) / len(fixed)

    before = measured()
    reports = [trainer.train_step(step) for step in range(15)]
    after = measured()
    assert after < before - 0.03, (before, after)
    assert set(reports[0]) == {"total", "direction", "tt_direction", "offsets_l2"}
    assert reports[-1]["offsets_l2"] > reports[0]["offsets_l2"] > 0  # δ moved away from 0


@pytest.mark.parametrize("changes", [{"low_memory": True}, {"channels_last": False}])
def test_speed_and_memory_options_give_the_same_gradient(G, clip, toy: Path, changes: dict) -> None:
    def gradient(**options) -> torch.Tensor:
        trainer = make_trainer(copy.deepcopy(G), clip, toy, losses={"direction": 1.0, "tt_direction": 0.5}, **options)
        trainer.train_step(0)
        return torch.cat([p.grad.flatten() for p in trainer.hypernet.parameters() if p.grad is not None])

    reference, grad = gradient(), gradient(**changes)
    # At step 0 G_B is close to G_A, so normalise(E(G_B) - E(G_A)) magnifies float32 rounding of the
    # two layouts (a few 1e-3 of the gradient's norm on some CPUs); a wrong path is off by far more.
    assert reference.abs().max() > 0
    assert float(torch.nn.functional.cosine_similarity(grad, reference, dim=0)) > 0.99995
    assert float((grad - reference).norm() / reference.norm()) < 1e-2


def test_resume_gives_the_same_hypernetwork(tmp_path: Path, G, clip, toy: Path) -> None:
    straight = run_training(make_trainer(G, clip, toy), tmp_path / "a", progress=False)
    kill_run_at(make_trainer(G, clip, toy), tmp_path / "b")
    edited = tmp_path / "edited.txt"
    edited.write_text(TOY + "Vampire - Human\n")
    with pytest.raises(HDNError, match="domains .* changed since the run started"):
        run_training(make_trainer(G, clip, edited), tmp_path / "b", resume=True, progress=False)
    resumed = run_training(make_trainer(G, clip, toy), tmp_path / "b", resume=True, progress=False)
    a, b = HyperDomainNet.load(straight), HyperDomainNet.load(resumed)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


# ----- command line -----------------------------------------------------------------------------
def test_cli_train_then_eval_text(tmp_path: Path, toy: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code = main(["hypernet", "train", "--preset", "td_multiple_plus", "--generator", GEN, "--domains", str(toy),
                 "--test-domains", "test-close", "--clip", "random:tiny", "--mapper-clip", "random:tiny", *TINY_NET, "--steps", "2", "--batch", "4", "--device", "cpu",
                 "--grid-samples", "2", "--out", str(run), "--no-progress", "--low-memory"])
    assert code == 0, capsys.readouterr().err
    for name in ("hypernet.safetensors", "checkpoint.pt", "config.yaml", "log.jsonl", "grid.png"):
        assert (run / name).is_file(), name
    assert yaml.safe_load((run / "config.yaml").read_text())["low_memory"] is True
    # grid: source row + 2 seen + 2 unseen rows of 2 samples
    assert Image.open(run / "grid.png").size[1] == 5 * 34 + 2  # + the row names' band on the right
    net = HyperDomainNet.load(run / "hypernet.safetensors")
    meta = net.metadata
    assert meta["clip_model"] == "random:tiny" and meta["input"] == "text"
    assert meta["generator"]["name"] == GEN and meta["config"]["steps"] == 2 and meta["quirks"] == "corrected"
    assert meta["domain_lists_sha256"]["train"] == load_domain_list(toy).sha256
    assert meta["preview_rows"][:3] == ["source", "Sketch", "Anime Drawing"]
    vectors = net.domain_vectors(["Zombie", "Crayon Drawing"])
    expected = net.domain_vectors(prompt_embeddings(load_clip("random:tiny"), ["Zombie", "Crayon Drawing"]))
    assert vectors.shape == (2, sum(load_generator(GEN).domain_layout)) and torch.allclose(vectors, expected)
    assert torch.allclose(net.domain_vectors("Zombie"), vectors[0], atol=1e-7)

    out = tmp_path / "eval"
    code = main(["hypernet", "eval", "--hypernet", str(run / "hypernet.safetensors"), "--out", str(out),
                 "--clip", "random:tiny", "--samples", "2", "--device", "cpu", "--unseen", "test-far"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"]["samples"] == 2 and report["protocol"]["clip_model"] == "random:tiny"
    assert report["protocol"]["templates"] == "imagenet (79)" and report["protocol"]["truncation"] == 1.0
    seen, unseen = report["lists"]
    assert (seen["role"], seen["count"], unseen["name"], unseen["count"]) == ("seen", 3, "test-far", 20)
    assert -1 <= seen["quality"]["mean"] <= 1 and 0 <= unseen["diversity"]["mean"] <= 2
    assert "| test-far | unseen | 20 |" in (out / "metrics.md").read_text()


def test_cli_image_variant_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        pixels = (torch.rand(40, 40, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"ref{i}.png")
    (tmp_path / "refs.txt").write_text("ref0.png\nref1.png\n")
    run = tmp_path / "run"
    code = main(["hypernet", "train", "--generator", GEN, "--images", str(tmp_path / "refs.txt"), "--clip",
                 "random:tiny", "--mapper-clip", "random:tiny", *TINY_NET, "--steps", "2", "--batch", "4",
                 "--device", "cpu", "--grid-samples", "2", "--invert-steps", "2", "--pnorm-samples", "64",
                 "--lpips-random-backbone", "--log-every", "1", "--out", str(run), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    terms = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert {"direction", "clip_ref", "l2_rec", "lpips_rec", "tt_direction", "offsets_l2"} <= set(terms)
    net = HyperDomainNet.load(run / "hypernet.safetensors")
    assert net.metadata["input"] == "image" and net.depth == 2
    assert [r["file"] for r in net.metadata["references"]] == ["ref0.png", "ref1.png"]
    with pytest.raises(HDNError, match="not text"):
        net.domain_vectors(["Sketch"])
    code = main(["hypernet", "eval", "--hypernet", str(run / "hypernet.safetensors"), "--out", str(tmp_path / "ev"),
                 "--seen", str(tmp_path / "refs.txt"), "--clip", "random:tiny", "--samples", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["lists"][0]["count"] == 2 and report["protocol"]["templates"] == "reference image embedding"


@pytest.mark.parametrize("args, message", [
    (["--domains", "EMPTY"], "has no domains"),
    (["--domains", "nope-list"], "neither a file nor a built-in list"),
    (["--domains", "TOY", "--batch", "1"], "batch"),
    (["--domains", "TOY", "--loss", "indomain=1"], "unknown loss"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, toy: Path, capsys: pytest.CaptureFixture,
                                   args: list[str], message: str) -> None:
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")).replace("TOY", str(toy)) for a in args]
    code = main(["hypernet", "train", "--generator", GEN, "--clip", "random:tiny", "--mapper-clip", "random:tiny",
                 *TINY_NET, "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
