"""Every command on a tiny random StyleGAN3 generator: adapt text (one and several targets, adaptive
layer selection), adapt image (II2S inversion), hypernet train / eval, generate (translate, rotate,
sums, interpolation video, hypernetwork prompts), eval, prune, info, the UI's renderer; and the
one-line refusals (StyleGAN2-only parameterisations, files of the other family)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from hyperdomainnet import load_generator
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.images import save_image
from hyperdomainnet.ui import Studio, domain_files, hypernet_files
from test_ui import SOURCES

SPEC = "random:sg3-t:32:channel_base=256:channel_max=16:style_dim=16"
SG2 = "random:32:channel_max=16:n_mlp=2"
TRAIN = ["--generator", SPEC, "--clip", "random:tiny", "--device", "cpu", "--steps", "2", "--batch", "2",
         "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A text domain, two domains of one run, a hypernetwork: trained once on the StyleGAN3 spec."""
    from hyperdomainnet.cli import main

    d = tmp_path_factory.mktemp("sg3")
    assert main(["adapt", "text", *TRAIN, "--target", "Sketch", "--auto-layer-k", "3", "--auto-layer-iters", "1",
                 "--out", str(d / "single")]) == 0
    assert main(["adapt", "text", *TRAIN, "--target", "Sketch", "--target", "Pixar", "--out", str(d / "multi")]) == 0
    (d / "domains.txt").write_text("Sketch - Photo\nPixar - Photo\nAnime - Photo\n")
    assert main(["hypernet", "train", *TRAIN, "--mapper-clip", "random:tiny", "--width", "16", "--depth", "1",
                 "--head-depth", "1", "--domains", str(d / "domains.txt"), "--out", str(d / "hyper")]) == 0
    return d


def test_text_domains_record_the_family_and_train_only_selected_layers(runs):
    single = Domain.load(runs / "single" / "domain.safetensors")
    G = load_generator(SPEC)
    assert single.generator["arch"]["family"] == "stylegan3" and single.domain_layout == G.domain_layout
    moved = [bool(v.abs().sum() > 0) for v in G.split_domain(single.vector)]
    assert 3 <= sum(moved) <= 6  # adaptive layer selection kept 3 of the 14 layers at each of 2 steps
    for target in ("sketch", "pixar"):
        assert Domain.load(runs / "multi" / "targets" / target / "domain.safetensors").vector.abs().sum() > 0


def test_adapt_image_with_inversion(tmp_path, capsys):
    image = save_image(torch.rand(3, 40, 40) * 2 - 1, tmp_path / "ref.png")
    code, out, err = run_cli(capsys, "adapt", "image", *TRAIN, "--lpips-random-backbone", "--pnorm-samples", "8",
                             "--invert-steps", "1", "--image", str(image), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert Domain.load(tmp_path / "run" / "domain.safetensors").generator["arch"]["family"] == "stylegan3"


def test_generate_translate_rotate_shifts_the_image(runs, tmp_path, capsys):
    base = ["generate", "--generator", SPEC, "--seeds", "0", "--individual", "--no-grid"]
    assert run_cli(capsys, *base, "--out", str(tmp_path / "a"))[0] == 0
    code, _, err = run_cli(capsys, *base, "--translate", f"{4 / 32},0", "--out", str(tmp_path / "b"))
    assert code == 0, err
    a = np.asarray(Image.open(tmp_path / "a" / "source" / "seed0000.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b" / "source" / "seed0000.png")).astype(int)
    assert np.abs(b[6:-6, 10:-6] - a[6:-6, 6:-10]).max() <= 3 < np.abs(b - a).max()
    assert json.loads((tmp_path / "b" / "generate.json").read_text())["translate"] == [0.125, 0.0]
    code, _, err = run_cli(capsys, *base, "--rotate", "30", "--domain", str(runs / "single" / "domain.safetensors"),
                           "--out", str(tmp_path / "c"))
    assert code == 0, err
    rotated = np.asarray(Image.open(tmp_path / "c" / "source" / "seed0000.png")).astype(int)
    assert np.abs(rotated - a).max() > 10


def test_generate_sums_videos_prompts_eval_prune_info(runs, tmp_path, capsys):
    a, b = (runs / "multi" / "targets" / name / "domain.safetensors" for name in ("sketch", "pixar"))
    commands = [
        ["generate", "--domain", str(a), "--domain", str(b), "--combine", "--n", "2", "--out", str(tmp_path / "sum")],
        ["generate", "--interpolate", str(a), str(b), "--frames", "3", "--n", "2", "--out", str(tmp_path / "video")],
        ["generate", "--hypernet", str(runs / "hyper" / "hypernet.safetensors"), "--text", "Pixar", "--n", "2",
         "--out", str(tmp_path / "prompt")],
        ["eval", "--domain", str(a), "--clip", "random:tiny", "--device", "cpu", "--lpips", "none", "--n", "2",
         "--out", str(tmp_path / "eval")],
        ["hypernet", "eval", "--hypernet", str(runs / "hyper" / "hypernet.safetensors"), "--clip", "random:tiny",
         "--device", "cpu", "--seen", str(runs / "domains.txt"), "--unseen", str(runs / "domains.txt"),
         "--samples", "2", "--out", str(tmp_path / "heval")],
        ["prune", "--domain", str(a), "--keep", "0.3", "--out", str(tmp_path / "pruned.safetensors")],
    ]
    for argv in commands:
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, (argv[0], err)
    assert (tmp_path / "video" / "interpolation.gif").exists()
    code, out, _ = run_cli(capsys, "info", SPEC)
    assert code == 0 and "StyleGAN3-T generator" in out and f"domain_size: {load_generator(SPEC).domain_size}" in out


@pytest.mark.parametrize("argv, message", [
    (["adapt", "text", *TRAIN, "--target", "Sketch", "--parameterization", "cout_mult"], "StyleGAN2 conv weights"),
    (["adapt", "text", *TRAIN, "--target", "Sketch", "--parameterization", "full"], "StyleGAN2 conv weights"),
    (["generate", "--generator", SG2, "--rotate", "10"], "StyleGAN3 generator's input"),
    (["generate", "--generator", SPEC, "--translate", "0.1"], "--translate takes X,Y"),
], ids=["weight-kind", "full", "rotate-stylegan2", "translate-one-number"])
def test_refusals_are_one_line(argv, message, tmp_path, capsys):
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "out"))
    assert code == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_files_of_the_other_family_are_refused(runs, tmp_path, capsys):
    for argv in (["--domain", str(runs / "single" / "domain.safetensors")],
                 ["--hypernet", str(runs / "hyper" / "hypernet.safetensors"), "--text", "Pixar"]):
        code, _, err = run_cli(capsys, "generate", "--generator", SG2, *argv, "--out", str(tmp_path / "x"))
        assert code == 1 and "made for a stylegan3 generator" in err and "is stylegan2" in err


def test_ui_renders_source_and_domain(runs):
    studio = Studio([SPEC], domain_files([runs / "single"]), hypernet_files([runs / "hyper"]), include_zoo=False)
    label = studio.domains.labels[0]
    source, adapted, caption = studio.render(SPEC, SOURCES[0], label, None, None, 3, 1.0, 1.0)
    assert source.size == adapted.size == (32, 32) and np.asarray(source).std() > 0
    assert np.abs(np.asarray(source).astype(int) - np.asarray(adapted).astype(int)).max() > 0


def test_export_to_rosinality_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", SPEC, "--out", str(tmp_path / "g.pt"))
    assert code == 1 and "no rosinality .pt layout" in err and not (tmp_path / "g.pt").exists()


def test_bf16_render_is_close_to_fp32():
    """bf16 autocast (``--precision bf16``) through the 15 layers: a few percent relative error."""
    G = load_generator(SPEC)
    ws = G.ws(torch.randn(4, G.style_dim))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = G.synthesis(ws)
    assert low.dtype == torch.bfloat16
    full = G.synthesis(ws)
    assert float((low.float() - full).norm() / full.norm()) < 0.06
