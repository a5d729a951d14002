"""hdn invert / hdn stylize through a ReStyle encoder: batching, refinement, prompts, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from conftest import run_cli
from hyperdomainnet import images
from hyperdomainnet.clip import load_clip
from hyperdomainnet.encoders import load_encoder
from hyperdomainnet.encoders.preprocess import encoder_input
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.latent import Latent
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from test_encoders import TINY_G, tiny_encoder_file
from test_stylize import write_photo

CPU = ["--device", "cpu", "--no-progress"]
II2S_FAST = ["--pnorm-samples", "2048", "--lpips-random-backbone"]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def encoder_file(tmp_path: Path) -> Path:
    return tiny_encoder_file(tmp_path)[0]


def latent(path: Path) -> torch.Tensor:
    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor("latent")


def write_hypernet(path: Path, G: torch.nn.Module) -> Path:
    torch.manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=load_clip("random:tiny").embed_dim, width=16, depth=1,
                         head_depth=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    return net.save(path, {"clip_model": "random:tiny", "input": "text", "generator": G.identity})


def test_invert_photos_and_a_folder_in_batches(tmp_path: Path, capsys, encoder_file: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    a, b = write_photo(folder / "a.png", 1, (40, 36)), write_photo(folder / "b.jpg", 2, (30, 40))
    (folder / "notes.txt").write_text("not a photo")
    c = write_photo(tmp_path / "c.png", 3, (32, 32))
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "invert", str(folder), str(c), "--encoder", str(encoder_file),
                                "--out", str(out), "--batch-size", "2", "--iterations", "3", "--no-align", *CPU)
    assert code == 0, err
    assert stdout.count("by psp.pt") == 3
    E = load_encoder(encoder_file)
    expected = E.invert(torch.cat([encoder_input(p) for p in (a, b, c)]), iterations=3)
    for i, stem in enumerate(["a", "b", "c"]):
        torch.testing.assert_close(latent(out / f"{stem}-latent.safetensors"), expected[i:i + 1], rtol=1e-4, atol=1e-4)
        assert Image.open(out / f"{stem}-reconstruction.png").size[0] == 2 * 34 + 2  # + the headers' band below
    with safe_open(str(out / "a-latent.safetensors"), framework="pt") as fh:
        assert '"iterations": 3' in fh.metadata()["hyperdomainnet"]
    written = Latent.load(out / "a-latent.safetensors")
    assert (written.image, written.image_sha256) == ("a.png", images.image_sha256(a))
    assert written.settings["iterations"] == 3 and written.generator["name"] == "psp.pt"


def test_invert_refine_continues_from_the_encoder_code(tmp_path: Path, capsys, encoder_file: Path) -> None:
    photo = write_photo(tmp_path / "p.png", 0, (64, 64))
    code, stdout, err = run_cli(capsys, "invert", str(photo), "--encoder", str(encoder_file), "--out",
                                str(tmp_path / "r"), "--refine", "2", "--iterations", "2", "--no-align",
                                *II2S_FAST, *CPU)
    assert code == 0, err
    assert "mse" in stdout
    plain = load_encoder(encoder_file).invert(encoder_input(photo), iterations=2)
    refined = latent(tmp_path / "r" / "p-latent.safetensors")
    assert not torch.allclose(plain, refined)
    assert (refined - plain).abs().max() < 0.1  # two Adam steps of lr 0.01 from the encoder's code


def test_refine_reports_each_photos_own_losses(tmp_path: Path, capsys, encoder_file: Path) -> None:
    """With several photos per batch, each photo's final II2S losses are its own (as if refined
    alone), recorded in its latent file and printed on its line; ``stylize`` prints them too."""
    photos = [write_photo(tmp_path / f"p{i}.png", i, (64, 64)) for i in range(2)]
    refine = ["--encoder", str(encoder_file), "--refine", "2", "--iterations", "2", "--no-align", *II2S_FAST, *CPU]
    code, stdout, err = run_cli(capsys, "invert", *map(str, photos), "--batch-size", "2", "--out",
                                str(tmp_path / "both"), *refine)
    assert code == 0, err
    both = [Latent.load(tmp_path / "both" / f"p{i}-latent.safetensors").losses for i in range(2)]
    for i, photo in enumerate(photos):
        code, _, err = run_cli(capsys, "invert", str(photo), "--out", str(tmp_path / f"alone{i}"), *refine)
        assert code == 0, err
        alone = Latent.load(tmp_path / f"alone{i}" / f"p{i}-latent.safetensors").losses
        assert set(both[i]) == {"total", "mse", "lpips", "p_norm"}
        assert both[i] == pytest.approx(alone, rel=1e-3)
        assert f"p{i}-latent.safetensors (total {both[i]['total']:.4g}, mse " in stdout
    assert both[0]["total"] != pytest.approx(both[1]["total"], rel=1e-3)
    hyper = write_hypernet(tmp_path / "h.safetensors", load_encoder(encoder_file).generator)
    code, stdout, err = run_cli(capsys, "stylize", *map(str, photos), "--text", "a pixar character", "--hypernet",
                                str(hyper), "--batch-size", "2", "--out", str(tmp_path / "s"), *refine)
    assert code == 0, err
    for i in range(2):
        assert f"p{i}.png: final II2S losses (total {both[i]['total']:.4g}, " in stdout


def test_stylize_text_through_the_hypernetwork(tmp_path: Path, capsys, encoder_file: Path,
                                               without_faces_extra: None) -> None:
    E = load_encoder(encoder_file)
    hyper = write_hypernet(tmp_path / "h.safetensors", E.generator)
    photos = [write_photo(tmp_path / f"p{i}.png", i, (64, 64)) for i in range(2)]
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, "stylize", *map(str, photos), "--text", "a pixar character",
                                "--hypernet", str(hyper), "--encoder", str(encoder_file), "--out", str(out), *CPU)
    assert code == 0 and err == "", err   # not a face encoder: no alignment, nothing to say
    assert "stylised 2 photos as 'a pixar character'" in stdout
    ws = E.invert(torch.cat([encoder_input(p) for p in photos]))
    net = HyperDomainNet.load(hyper)
    delta = net.domain_vectors("a pixar character")
    with torch.no_grad():
        stylised = E.generator.synthesis(ws, domain=delta, noise_mode="const")
        recon = E.generator.synthesis(ws, noise_mode="const")
    grid = np.asarray(Image.open(out / "grid.png")).astype(int)[:2 * 34 + 2, :3 * 34 + 2]  # the caption bands off
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    for i in range(2):
        strip = np.asarray(Image.open(out / f"p{i}-stylized.png")).astype(int)[:34 + 2]
        assert np.array_equal(strip, grid[i * 34:(i + 1) * 34 + 2])
        # rendering on another code path (channels-last) may move a pixel by one level
        assert np.abs(strip[2:34, 36:68] - np.asarray(images.to_pil(recon[i:i + 1]))).max() <= 1
        assert np.abs(strip[2:34, 70:102] - np.asarray(images.to_pil(stylised[i:i + 1]))).max() <= 1
    assert np.abs(strip[2:34, 70:102] - strip[2:34, 36:68]).mean() > 1


@pytest.mark.parametrize("case,message", [
    ("generator-as-encoder", "generator checkpoint, not an encoder"),
    ("resolution", "px generator but --generator is 64 px"),
    ("not-a-photo", "notes.png"),
    ("hypernet-for-another-generator", "trained for random:64"),
    ("no-domain", "exactly one of --text"),
    ("out-not-empty", "--force"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, encoder_file: Path, case: str,
                                                  message: str) -> None:
    photo = write_photo(tmp_path / "p.png", 0, (64, 64))
    out = tmp_path / "out"
    args = ["invert", str(photo), "--encoder", str(encoder_file)]
    if case == "generator-as-encoder":
        args[3] = str(write_rosinality(load_generator(TINY_G), tmp_path / "g.pt"))
    elif case == "resolution":
        args += ["--generator", "random:64:channel_max=16:n_mlp=2:style_dim=32"]
    elif case == "not-a-photo":
        (tmp_path / "notes.png").write_text("these are notes, not pixels")
        args[1] = str(tmp_path / "notes.png")
    elif case == "hypernet-for-another-generator":
        other = load_generator("random:64:channel_max=16:n_mlp=2:style_dim=32")
        hyper = write_hypernet(tmp_path / "h.safetensors", other)
        args = ["stylize", str(photo), "--text", "x", "--hypernet", str(hyper), "--encoder", str(encoder_file)]
    elif case == "no-domain":
        args = ["stylize", str(photo), "--encoder", str(encoder_file)]
    elif case == "out-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, *args, "--out", str(out), "--no-align", *CPU)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert (not out.exists()) if case != "out-not-empty" else [p.name for p in out.iterdir()] == ["keep.txt"]


def test_precision_auto_runs_the_encoder_path_in_bf16_where_native(tmp_path: Path, capsys, encoder_file: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperdomainnet import device as device_settings

    photo = write_photo(tmp_path / "p.png", 0, (64, 64))
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(encoder_file), "--out",
                           str(tmp_path / "fp32"), *CPU)
    assert code == 0, err
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: True)  # as on a CPU with AMX
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(encoder_file), "--out",
                           str(tmp_path / "auto"), *CPU)
    assert code == 0, err
    exact, rounded = (Latent.load(tmp_path / d / "p-latent.safetensors") for d in ("fp32", "auto"))
    assert (exact.settings["precision"], rounded.settings["precision"]) == ("fp32", "bf16")
    assert rounded.latent.dtype == torch.float32
    difference = (rounded.latent - exact.latent).norm() / exact.latent.norm()
    assert 0 < float(difference) < 0.05  # bf16 rounds the encoder's arithmetic, not its answer
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(encoder_file), "--precision", "fp8",
                           "--out", str(tmp_path / "bad"), *CPU)
    assert code == 1 and "--precision 'fp8'" in err and not (tmp_path / "bad").exists()
