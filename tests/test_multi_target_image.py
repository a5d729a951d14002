"""Several reference images in one run: equal to single-image runs, run directory, resume, CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from hyperdomainnet import load_generator
from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.domain import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.stylize import REFERENCE_LATENT, style_mix
from hyperdomainnet.training import image as image_training
from hyperdomainnet.training.config import ImageAdaptConfig, build_config
from hyperdomainnet.training.image import ImageTrainer, image_slugs
from hyperdomainnet.training.loop import run_training

from conftest import perturb, run_cli
import test_train_image
from test_train_image import FAST, FAST_CLI, GEN, straight_and_resumed, write_reference

# The image-adaptation tests' fixtures: the tiny CLIP built once, a private cache home (autouse).
clip, fast_setup = test_train_image.clip, test_train_image.fast_setup

LOSSES = {"direction": 1.0, "clip_within": 0.5, "clip_ref": 3.0, "l2_rec": 1.0, "lpips_rec": 1.0, "global": 0.3,
          "indomain": 0.5, "offsets_l2": 0.5}


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [write_reference(tmp_path / "Ink wash.png", seed=0), write_reference(tmp_path / "mosaic.jpg", seed=1)]


def make_config(images: list[Path], **changes) -> ImageAdaptConfig:
    settings = dict(generator=GEN, clip="random:tiny", images=[str(p) for p in images], steps=4, batch=2, lr=0.05,
                    device="cpu", precision="fp32", save_every=2, grid_every=2, log_every=1, grid_samples=2,
                    losses=LOSSES, **FAST)
    settings.update(changes)
    return ImageAdaptConfig(**settings)


def multi_trainer(images: list[Path], clip: ClipEnsemble, **changes) -> ImageTrainer:
    return ImageTrainer(make_config(images, **changes), G=perturb(load_generator(GEN)), clip=clip,
                                   progress=False)


def single_trainer(config: ImageAdaptConfig, clip: ClipEnsemble) -> ImageTrainer:
    return ImageTrainer(config, G=perturb(load_generator(GEN)), clip=clip, progress=False)


@pytest.mark.parametrize("changes,micro_batch", [
    ({}, None), ({"parameterization": "style_offset", "noise_mode": "const", "mixing": 0.0}, None),
    ({"placement": "before_demod", "low_memory": True, "batch": 3}, None),
    ({"low_memory": True, "batch": 3}, 2),  # as after running out of memory: each target's rows in parts of 2
    ({"low_memory": True, "batch": 3}, 3)])  # one target per part
def test_each_target_equals_its_single_run(images: list[Path], clip: ClipEnsemble, changes: dict,
                                           micro_batch: int | None) -> None:
    multi = multi_trainer(images, clip, **changes)
    if micro_batch is not None:
        multi.micro_batch.size = micro_batch
        assert multi._parts() == ([slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)] if micro_batch == 2
                                  else [slice(0, 3), slice(3, 6)])
    for step in range(3):
        terms = multi.train_step(step)
    assert terms["total"] == pytest.approx(sum(v * LOSSES[k.rpartition("/")[2]]
                                               for k, v in terms.items() if k != "total"), rel=1e-5)
    for k, slug in enumerate(multi.slugs):
        single = single_trainer(multi.single_config(k), clip)
        assert single.config.image == str(images[k]) and single.config.images == []
        assert torch.equal(single.reference_latent, multi.reference_latents[k:k + 1])
        for step in range(3):
            single_terms = single.train_step(step)
        expected = single.param.vector().detach()
        assert expected.abs().sum() > 0
        torch.testing.assert_close(multi.params[k].vector().detach(), expected, rtol=1e-4, atol=1e-6)
        assert set(single_terms) - {"total"} == {name for name in LOSSES}
        for name, value in single_terms.items():
            if name != "total":
                assert terms[f"{slug}/{name}"] == pytest.approx(value, rel=1e-4, abs=1e-7), name
    assert not torch.equal(multi.params[0].vector(), multi.params[1].vector())


def test_slugs_and_settings(tmp_path: Path, images: list[Path]) -> None:
    assert image_slugs(["/a/Ink wash.png", "/b/ink_wash.jpg", "/c/..png"]) == ["ink-wash", "ink-wash-2", "target"]
    one = make_config(images[:1])
    assert (one.image, one.images, one.reference_images()) == (str(images[0]), [], [str(images[0])])
    two = build_config(ImageAdaptConfig, {"image": "preset.png"}, updates={"images": ["a.png", "b.png"]})
    assert two.image == "" and two.images == [str(Path("a.png").absolute()), str(Path("b.png").absolute())]
    with pytest.raises(HDNError, match="an --image is empty"):
        build_config(ImageAdaptConfig, {"images": ["a.png", " "]})


def test_run_directory_metadata_preview_and_grid(tmp_path: Path, images: list[Path], clip: ClipEnsemble) -> None:
    multi = multi_trainer(images, clip, steps=3)
    result = run_training(multi, tmp_path / "multi", progress=False)
    assert result == tmp_path / "multi" / "targets"
    assert sorted(p.name for p in result.iterdir()) == ["ink-wash", "mosaic"]
    # source, 2 adapted rows, 2 rows with each reference's fine layers (as a single run's preview),
    # and a caption band to the right of the rows
    assert Image.open(tmp_path / "multi" / "grid.png").size[1] == 5 * 34 + 2
    for k, slug in enumerate(["ink-wash", "mosaic"]):
        single_dir = tmp_path / f"single-{k}"
        single = run_training(single_trainer(multi.single_config(k), clip), single_dir, progress=False)
        a, b = Domain.load(single), Domain.load(result / slug / "domain.safetensors")
        torch.testing.assert_close(b.vector, a.vector, rtol=1e-4, atol=1e-6)
        assert torch.equal(b.tensors[REFERENCE_LATENT], a.tensors[REFERENCE_LATENT])
        assert {**b.metadata, "created": None} == {**a.metadata, "created": None}
        assert b.metadata["reference"]["file"] == images[k].name
    # Preview: the source row, then target k's row rendered with δ_k (constant noise throughout).
    shown, per_row = multi.preview()
    G = multi.G
    with torch.no_grad():
        torch.testing.assert_close(shown[:per_row], G.synthesis(multi.preview_ws))
        for k in range(2):
            torch.testing.assert_close(shown[(k + 1) * per_row:(k + 2) * per_row],
                                       multi.params[k].synthesize(G, multi.preview_ws))
            mixed = style_mix(multi.mix_ws, multi.reference_latents[k:k + 1])
            torch.testing.assert_close(shown[(k + 3) * per_row:(k + 4) * per_row], multi.params[k].synthesize(G, mixed))


def test_resume_and_changed_reference(tmp_path: Path, images: list[Path], clip: ClipEnsemble,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    straight, resumed = straight_and_resumed(lambda: multi_trainer(images, clip), image_training, tmp_path,
                                             monkeypatch)
    for slug in ("ink-wash", "mosaic"):
        a, b = (Domain.load(run / slug / "domain.safetensors") for run in (straight, resumed))
        assert torch.equal(a.vector, b.vector) and a.vector.abs().sum() > 0
        assert torch.equal(a.tensors[REFERENCE_LATENT], b.tensors[REFERENCE_LATENT])
    write_reference(images[1], seed=5)
    with pytest.raises(HDNError, match=r"reference image .*mosaic.jpg changed since the run started"):
        run_training(multi_trainer(images, clip, steps=5), tmp_path / "b", resume=True, progress=False)


def test_help_shows_the_repeatable_image(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "adapt", "image", "--help")
    assert code == 0
    assert "repeat to train one domain per image" in " ".join(stdout.replace("│", " ").split())


def test_official_quirks_are_refused(images: list[Path], clip: ClipEnsemble) -> None:
    with pytest.raises(HDNError, match="--quirks corrected"):
        multi_trainer(images, clip, quirks="official")


def test_cli_two_images_and_resume(tmp_path: Path, images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    base = ["adapt", "image", "--generator", GEN, "--clip", "random:tiny", "--batch", "2", "--device", "cpu",
            "--no-progress", *FAST_CLI]
    code, stdout, err = run_cli(capsys, *base, "--image", str(images[0]), "--image", str(images[1]), "--out", str(out),
                                "--steps", "2", "--save-every", "2", "--low-memory")
    assert code == 0, err
    assert "2 reference images" in stdout
    for slug in ("ink-wash", "mosaic"):
        assert Domain.load(out / "targets" / slug / "domain.safetensors").metadata["trainer"] == "image"
    assert not (out / "domain.safetensors").exists()
    code, _, err = run_cli(capsys, "adapt", "image", "--out", str(out), "--resume", "--steps", "3", "--no-progress")
    assert code == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


@pytest.mark.parametrize("case,message", [("missing", "does not exist"), ("empty", "0 bytes"),
                                          ("corrupt", "not an image format"), ("official", "--quirks corrected")])
def test_cli_refusals_are_one_line(tmp_path: Path, images: list[Path], capsys: pytest.CaptureFixture[str],
                                   case: str, message: str) -> None:
    """Refused before any inversion or model loading (the default generator is not at hand): a
    second image missing, empty or unreadable; the official quirks of the im2im_single preset."""
    second = tmp_path / "second.png"
    if case == "empty":
        second.write_bytes(b"")
    elif case == "corrupt":
        second.write_bytes(b"not an image at all")
    extra = ["--preset", "im2im_single", "--image", str(images[1])] if case == "official" else ["--image", str(second)]
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "adapt", "image", "--image", str(images[0]), *extra, "--out", str(out),
                           "--no-progress", "--device", "cpu", *FAST_CLI)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not out.exists()
