"""Image-driven (one-shot) adaptation: loss terms, reference handling, resume, preset, CLI, bad input."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hyperdomainnet import load_generator
from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.images import load_image
from hyperdomainnet.inversion import cached_invert
from hyperdomainnet.losses import (clip_ref_loss, clip_within_loss, direction_loss, global_loss,
                                   indomain_angle_loss, l2_rec_loss, offsets_l2)
from hyperdomainnet.perceptual import load_lpips
from hyperdomainnet.stylize import REFERENCE_LATENT, style_mix
from hyperdomainnet.training import image as image_training
from hyperdomainnet.training.config import ImageAdaptConfig, build_config, load_preset
from hyperdomainnet.training.loop import run_training
from hyperdomainnet.training.sampling import sample_noise, sample_ws_per_call

from conftest import kill_run_at, run_cli

GEN = "random:32:channel_max=16:n_mlp=2"
FAST = dict(invert_steps=3, pnorm_samples=2048, lpips_random_backbone=True)
FAST_CLI = ["--invert-steps", "3", "--pnorm-samples", "2048", "--lpips-random-backbone"]


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


@pytest.fixture(autouse=True)
def fast_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: ClipEnsemble) -> None:
    """A private cache home, and the (slow to build) random CLIP ensemble built once per module."""
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))

    def cached(spec: str, device: str = "cpu", antialias: bool = False) -> ClipEnsemble:
        assert spec == "random:tiny"
        return clip

    monkeypatch.setattr(image_training.ClipEnsemble, "from_spec", cached)


def write_reference(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_config(image: Path, **changes) -> ImageAdaptConfig:
    settings = dict(generator=GEN, clip="random:tiny", image=str(image), steps=4, batch=2, lr=0.05, device="cpu",
                    save_every=2, grid_every=2, log_every=1, grid_samples=2, **FAST)
    settings.update(changes)
    return ImageAdaptConfig(**settings)


def make_trainer(image: Path, clip: ClipEnsemble, **changes) -> image_training.ImageTrainer:
    cfg = make_config(image, **changes)
    return image_training.ImageTrainer(cfg, G=load_generator(cfg.generator), clip=clip, progress=False)


def test_reference_is_inverted_once_and_fitted(tmp_path: Path, clip: ClipEnsemble) -> None:
    ref = write_reference(tmp_path / "ref.png")
    trainer = make_trainer(ref, clip)
    assert torch.equal(trainer.reference.image, load_image(ref, 32))
    expected = cached_invert(trainer.G, ref, steps=3, lpips_random_backbone=True, pnorm_samples=2048,
                             progress=False)
    assert expected.cached and torch.equal(trainer.reference_latent, expected.latent)
    assert trainer.reference_latent.shape == (1, trainer.G.n_latent, trainer.G.style_dim)
    again = make_trainer(ref, clip)
    assert again.reference.cached and torch.equal(again.reference_latent, trainer.reference_latent)
    padded = make_trainer(ref, clip, fit="pad")
    assert torch.equal(padded.reference.image, load_image(ref, 32, fit="pad"))
    assert not torch.equal(padded.reference_latent, trainer.reference_latent)


def test_loss_terms_match_the_loss_functions(tmp_path: Path, clip: ClipEnsemble) -> None:
    """Each reported term, recomputed from the loss functions on the step's batch: encoder weights
    multiply the CLIP terms, clip_ref is averaged over the encoders as in the official code."""
    enc, _ = next(iter(clip))
    two = ClipEnsemble([(enc, 1.0), (enc, 0.5)])
    coefs = {"direction": 1.0, "clip_within": 0.5, "clip_ref": 30.0, "l2_rec": 10.0, "lpips_rec": 10.0,
             "global": 0.3, "indomain": 0.2, "offsets_l2": 0.7}
    cfg = make_config(write_reference(tmp_path / "ref.png"), losses=coefs, mixing=0.5)
    trainer = image_training.ImageTrainer(cfg, G=load_generator(GEN), clip=two, progress=False)
    trainer.train_step(0)  # move δ away from 0 so that no term is trivially 0
    G, P = trainer.G, trainer.param
    rng = torch.Generator()
    rng.set_state(trainer.rng.get_state())
    vector = P.vector().detach().clone()
    terms = trainer.train_step(1)
    with torch.no_grad():
        P.load_vector(vector)
        ws = sample_ws_per_call(G, 2, 0.5, rng, torch.device("cpu"), 1)[0]
        noise = sample_noise(G, "random", 2, rng, torch.device("cpu"))
        a = enc.encode_images(G.synthesis(ws, noise=noise))
        b = enc.encode_images(P.synthesize(G, ws, noise=noise))
        w_ref = trainer.reference_latent
        r = enc.encode_images(load_image(tmp_path / "ref.png", 32))
        r_a = enc.encode_images(G.synthesis(w_ref))
        ref_b = P.synthesize(G, w_ref)
        lpips = load_lpips("vgg", "cpu", random_backbone=True)
        expected = {"direction": 1.5 * direction_loss(b, a, r, r_a),
                    "clip_within": 1.5 * clip_within_loss(b, a, r, r_a),
                    "global": 1.5 * global_loss(b, r),
                    "indomain": 1.5 * indomain_angle_loss(b, a),
                    "clip_ref": 0.75 * clip_ref_loss(enc.encode_images(ref_b), r),
                    "l2_rec": l2_rec_loss(ref_b, load_image(tmp_path / "ref.png", 32)),
                    "lpips_rec": lpips(ref_b, load_image(tmp_path / "ref.png", 32)).mean(),
                    "offsets_l2": offsets_l2(P.regularized_tensors())}
    assert set(terms) == set(expected) | {"total"}
    for name, value in expected.items():
        assert terms[name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
        assert float(value) > 0, name
    assert terms["total"] == pytest.approx(sum(coefs[k] * terms[k] for k in coefs), rel=1e-5)


def test_training_pulls_the_reference_reconstruction_towards_the_image(tmp_path: Path, clip: ClipEnsemble) -> None:
    trainer = make_trainer(write_reference(tmp_path / "ref.png"), clip, lr=0.05,
                           losses={"l2_rec": 1.0, "clip_ref": 1.0})
    G_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    first = trainer.train_step(0)
    for step in range(1, 15):
        last = trainer.train_step(step)
    assert last["l2_rec"] < first["l2_rec"] and last["clip_ref"] < first["clip_ref"], (first, last)
    assert all(torch.equal(v, G_before[k]) for k, v in trainer.G.state_dict().items())


def test_preview_rows_and_style_mixing(tmp_path: Path, clip: ClipEnsemble) -> None:
    trainer = make_trainer(write_reference(tmp_path / "ref.png"), clip)
    trainer.train_step(0)
    images, nrow = trainer.preview()
    assert nrow == 2 and images.shape == (6, 3, 32, 32)
    G, P = trainer.G, trainer.param
    mixed = P.synthesize(G, style_mix(trainer.mix_ws, trainer.reference_latent))
    torch.testing.assert_close(images[:2], G.synthesis(trainer.preview_ws))
    torch.testing.assert_close(images[2:4], P.synthesize(G, trainer.preview_ws))
    torch.testing.assert_close(images[4:], mixed)
    mix_ws = style_mix(trainer.mix_ws, trainer.reference_latent)
    assert torch.equal(mix_ws[:, 7:], trainer.reference_latent[:, 7:].expand(2, -1, -1))
    assert torch.equal(mix_ws[:, :7], trainer.mix_ws[:, :7])


def straight_and_resumed(make: Callable[[], Any], module: Any, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Results of a run straight through and of one interrupted and resumed, where the resumed
    trainer's re-inversion of the references (``module.invert_photo``) moves their latents: the
    checkpoint's latents must win (a re-inversion may differ, e.g. non-deterministic on a GPU)."""
    straight = run_training(make(), tmp_path / "a", progress=False)
    kill_run_at(make(), tmp_path / "b")
    invert_photo = module.invert_photo
    monkeypatch.setattr(module, "invert_photo", lambda *a, **k: dataclasses.replace(
        inverted := invert_photo(*a, **k), latent=inverted.latent + 0.1))
    return straight, run_training(make(), tmp_path / "b", resume=True, progress=False)


def test_resume_gives_the_same_result(tmp_path: Path, clip: ClipEnsemble, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = write_reference(tmp_path / "ref.png")
    straight, resumed = straight_and_resumed(lambda: make_trainer(ref, clip), image_training, tmp_path, monkeypatch)
    a, b = Domain.load(straight), Domain.load(resumed)
    assert torch.equal(a.vector, b.vector) and a.vector.abs().sum() > 0
    assert torch.equal(a.tensors[REFERENCE_LATENT], b.tensors[REFERENCE_LATENT])
    # A reference image changed between the start and the resumption is refused.
    write_reference(ref, seed=1)
    with pytest.raises(HDNError, match="changed since the run started"):
        run_training(make_trainer(ref, clip, steps=5), tmp_path / "b", resume=True, progress=False)


def test_preset_defaults_follow_the_official_im2im_single() -> None:
    cfg = build_config(ImageAdaptConfig, load_preset("im2im_single"), {"image": "ref.png"})
    defaults = ImageAdaptConfig(image="ref.png")
    assert (defaults.lr, defaults.losses, defaults.invert_steps, defaults.lambda_p) == \
        (cfg.lr, cfg.losses, cfg.invert_steps, cfg.lambda_p)


@pytest.mark.parametrize("changes", [{"low_memory": True}, {"channels_last": False}])
def test_speed_and_memory_options_give_the_same_gradient(tmp_path: Path, clip: ClipEnsemble, changes: dict) -> None:
    image = write_reference(tmp_path / "ref.png")
    losses = {"direction": 1.0, "clip_ref": 1.0, "l2_rec": 1.0, "indomain": 0.5}

    def gradient(**options) -> torch.Tensor:
        trainer = make_trainer(image, clip, losses=losses, **options)
        with torch.no_grad():
            for p in trainer.param.parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        trainer.train_step(0)
        return torch.cat([p.grad.flatten() for p in trainer.param.parameters()])

    reference, grad = gradient(), gradient(**changes)
    torch.testing.assert_close(grad, reference, atol=1e-4 * float(reference.abs().max()), rtol=1e-3)
    assert reference.abs().max() > 0


@pytest.mark.parametrize("changes,message", [
    ({"image": " "}, "no reference image"),
    ({"losses": {"clip_reff": 1.0}}, "unknown loss"),
    ({"losses": {"indomain": 1.0}, "batch": 1}, "batch 2"),
    ({"parameterization": "full"}, "parameterization"),
    ({"micro_batch": 2}, "micro_batch"),  # text adaptation only
])
def test_bad_settings(tmp_path: Path, changes: dict, message: str) -> None:
    base = make_config(tmp_path / "ref.png").model_dump()
    base.update(changes)
    with pytest.raises(HDNError, match=message):
        build_config(ImageAdaptConfig, base)


def test_cli_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = write_reference(tmp_path / "my ref.png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "adapt", "image", "--generator", GEN, "--clip", "random:tiny",
                                "--image", str(ref), "--steps", "3", "--batch", "2", "--seed", "5", "--out", str(out),
                                "--device", "cpu", "--save-every", "3", "--grid-samples", "3", "--no-progress",
                                "--low-memory", *FAST_CLI)
    assert code == 0, err
    assert yaml.safe_load((out / "config.yaml").read_text())["low_memory"] is True
    assert "my ref.png" in stdout and "domain.safetensors" in stdout
    for name in ("config.yaml", "checkpoint.pt", "log.jsonl", "grid.png", "grids/step_000000.png",
                 "domain.safetensors"):
        assert (out / name).is_file(), name
    assert Image.open(out / "grid.png").size[1] == 3 * 34 + 2  # 3 rows: source, adapted, mixed (+ names)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3]
    assert {"direction", "clip_within", "clip_ref", "l2_rec", "lpips_rec", "total"} == set(log[0]) - {"step", "time"}
    domain = Domain.load(out / "domain.safetensors")
    reference = domain.metadata["reference"]
    assert reference["file"] == "my ref.png"
    assert reference["sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert domain.metadata["trainer"] == "image" and domain.metadata["config"]["seed"] == 5
    G = load_generator(GEN)
    latent = cached_invert(G, ref, steps=3, lpips_random_backbone=True, pnorm_samples=2048, progress=False)
    assert latent.cached and torch.equal(domain.tensors[REFERENCE_LATENT], latent.latent)
    assert domain.vector.shape == (G.domain_size,) and domain.vector.abs().sum() > 0

    code, _, err = run_cli(capsys, "adapt", "image", "--out", str(out), "--resume", "--steps", "4", "--no-progress")
    assert code == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def corrupt(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return path


@pytest.mark.parametrize("case,message", [
    ("missing", "does not exist"),
    ("empty", "0 bytes"),
    ("directory", "is a directory"),
    ("corrupt", "ref.png"),
    ("huge", "decompression-bomb"),
    ("no-image", "no reference image"),
    ("bad-loss", "unknown loss"),
    ("generator", "not an existing file"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, case: str, message: str) -> None:
    ref = tmp_path / "ref.png"
    extra = ["--image", str(ref)]
    if case == "empty":
        ref.write_bytes(b"")
    elif case == "directory":
        ref.mkdir()
    elif case == "corrupt":
        corrupt(ref)
    elif case == "huge":
        write_reference(ref)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    elif case == "no-image":
        extra = []
    elif case in ("bad-loss", "generator"):
        write_reference(ref)
        extra += ["--loss", "l3_rec=1"] if case == "bad-loss" else ["--generator", str(tmp_path / "no.pt")]
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "adapt", "image", "--generator", GEN, "--clip", "random:tiny", "--steps", "1",
                           "--out", str(out), "--no-progress", "--device", "cpu", *FAST_CLI, *extra)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not out.exists()
