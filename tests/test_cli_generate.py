"""`hdn generate` and `hdn eval` end to end on a tiny generator saved to disk."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import perturb
from hyperdomainnet import load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.images import save_image, to_pil
from hyperdomainnet.render import Row, render_rows
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality

SIZE = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny generator as a .pt, and domain files naming it: a, b (domain vectors), c (style
    offset), d (cout_mult), other (for a 64 px generator)."""
    tmp_path = tmp_path_factory.mktemp("files")
    pt = write_rosinality(perturb(load_generator("random:32:channel_max=16:n_mlp=2")), tmp_path / "g.pt")
    G = load_generator(pt)
    G.identity["name"] = str(pt)
    paths = {"pt": pt, "G": G}
    for name, kind, seed in (("a", "domain_vector", 1), ("b", "domain_vector", 2), ("c", "style_offset", 3),
                             ("d", "cout_mult", 4)):
        P = build_parameterization(kind, G)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in P.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        paths[name] = P.to_domain_file(G, {"target": f"style {name}"}).save(tmp_path / f"{name}.safetensors")
    big = load_generator("random:64:channel_max=16:n_mlp=2")
    paths["other"] = (build_parameterization("domain_vector", big).to_domain_file(big, {"target": "x"})
                      .save(tmp_path / "other.safetensors"))
    return paths


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def grid_cell(path, row: int, col: int) -> np.ndarray:
    arr = np.asarray(Image.open(path).convert("RGB"))
    y, x = 2 + row * (SIZE + 2), 2 + col * (SIZE + 2)
    return arr[y:y + SIZE, x:x + SIZE].astype(int)


def pixels(image: torch.Tensor) -> np.ndarray:
    return np.asarray(to_pil(image)).astype(int)


def test_grid_rows_are_source_then_domains_on_the_same_seeds(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["generate", "--domain", files["a"], "--domain", f"{files['b']}*0.5",
                             "--domain", files["d"], "--seeds", "3-5", "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    assert "rendered 4 rows × 3 seeds in fp32" in stdout
    grid = Image.open(out / "grid.png")
    assert grid.size[1] == 4 * (SIZE + 2) + 2 and grid.size[0] > 3 * (SIZE + 2) + 2  # + the row names' band
    from hyperdomainnet.domain.files import Domain

    rows = [Row("source"), Row("a", Domain.load(files["a"])), Row("b", Domain.load(files["b"]), 0.5),
            Row("d", Domain.load(files["d"]))]
    expected = render_rows(files["G"], rows, [3, 4, 5])
    for r in range(4):
        for i in range(3):
            assert np.abs(grid_cell(out / "grid.png", r, i) - pixels(expected[r, i])).max() <= 1
    assert np.abs(pixels(expected[1, 0]) - pixels(expected[0, 0])).max() > 10
    manifest = json.loads((out / "generate.json").read_text())
    assert [r["label"] for r in manifest["rows"]] == ["source", "style a", "style b*0.5", "style d"]
    assert manifest["seeds"] == [3, 4, 5] and manifest["rows"][3]["kind"] == "cout_mult"
    assert manifest["rows"][1]["target"] == "style a"
    assert all("folder" not in r for r in manifest["rows"]) and sorted(p.name for p in out.iterdir()) == [
        "generate.json", "grid.png"]  # no row folders without --individual


def test_individual_images_and_combined_domains(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(["generate", "--generator", files["pt"], "--domain", f"{files['a']}*0.6",
                        "--domain", f"{files['b']}*0.6", "--combine", "--n", "2", "--seed", "10",
                        "--no-grid", "--individual", "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    assert not (out / "grid.png").exists()
    assert sorted(p.name for p in (out / "source").iterdir()) == ["seed0010.png", "seed0011.png"]
    folder = out / "style_a_x0.6+style_b_x0.6"
    a, b = Domain.load(files["a"]), Domain.load(files["b"])
    G = files["G"]
    ws = torch.cat([torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(s)) for s in (10, 11)])
    with torch.no_grad():
        expected = G.synthesis(G.ws(ws), domain=0.6 * a.vector + 0.6 * b.vector)
    for i, s in enumerate((10, 11)):
        got = np.asarray(Image.open(folder / f"seed{s:04d}.png")).astype(int)
        assert np.abs(got - pixels(expected[i])).max() <= 1


def _hypernet(G, path):
    torch.manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1)
    with torch.no_grad():
        for head in net.heads:
            head.out.weight.mul_(300)
    return net.save(path, {"clip_model": "random:tiny", "input": "text", "generator": dict(G.identity)})


def test_hypernetwork_prompts_are_rows(files, tmp_path, capsys):
    hdn = _hypernet(files["G"], tmp_path / "hdn.safetensors")
    out = tmp_path / "out"
    code, stdout, err = run(["generate", "--hypernet", hdn, "--text", "Pixar", "--text", "Anime Painting",
                             "--n", "2", "--device", "cpu", "--out", out], capsys)
    assert code == 0, err  # the generator comes from the hypernetwork's metadata
    manifest = json.loads((out / "generate.json").read_text())
    assert [r["label"] for r in manifest["rows"]] == ["source", "Pixar", "Anime Painting"]
    assert np.abs(grid_cell(out / "grid.png", 1, 0) - grid_cell(out / "grid.png", 0, 0)).max() > 5
    assert np.abs(grid_cell(out / "grid.png", 1, 0) - grid_cell(out / "grid.png", 2, 0)).max() > 0


def test_interpolation_and_alpha_sweep_videos(files, tmp_path, capsys):
    video = tmp_path / "v.gif"
    code, _, err = run(["generate", "--interpolate", files["a"], f"{files['b']}*0.5", "--frames", "4", "--n", "2",
                        "--video", video, "--device", "cpu", "--out", tmp_path / "i"], capsys)
    assert code == 0, err
    frames = iio.imread(video, index=None)
    assert frames.shape == (4, SIZE + 4, 2 * (SIZE + 2) + 2, 3)
    assert not (tmp_path / "i" / "grid.png").exists()  # no grid by default for animations

    code, _, err = run(["generate", "--domain", files["c"], "--alpha-sweep", "0:1", "--frames", "3", "--n", "1",
                        "--video", tmp_path / "s.mp4", "--grid", "--device", "cpu", "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    assert iio.imread(tmp_path / "s.mp4", plugin="FFMPEG", index=None).shape[0] == 3
    sweep = json.loads((tmp_path / "s" / "generate.json").read_text())
    assert [r["scale"] for r in sweep["rows"]] == [0.0, 0.5, 1.0]
    # α = 0 is the source image
    G = files["G"]
    with torch.no_grad():
        source = G.synthesis(G.ws(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(0))))
    assert np.abs(grid_cell(tmp_path / "s" / "grid.png", 0, 0) - pixels(source[0])).max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--domain", "{tmp}/missing.safetensors"], "does not exist"),
    (["--domain", "{a}*strong"], "bad domain spec"),
    (["--domain", "{a}", "--domain", "{c}", "--combine"], "same kind"),
    (["--domain", "{a}", "--domain", "{other}", "--combine"], "same generator"),
    (["--domain", "{other}", "--generator", "{pt}"], "--generator"),
    (["--text", "Pixar"], "--hypernet"),
    (["--domain", "{a}", "--video", "{tmp}/v.gif"], "--interpolate"),
    (["--domain", "{a}", "--domain", "{b}", "--alpha-sweep", "0:1"], "one --domain"),
    (["--domain", "{a}", "--alpha-sweep", "0-1"], "START:END"),
    (["--interpolate", "{a}", "{b}", "--frames", "1"], "--frames"),
    (["--interpolate", "{a}", "{b}", "--video", "{tmp}/v.avi"], ".gif or .mp4"),
    (["--domain", "{a}", "--no-grid"], "nothing to write"),
    (["--domain", "{a}", "--seeds", "x"], "bad seeds"),
])
def test_bad_input_is_a_one_line_error(files, tmp_path, capsys, args, message):
    values = {k: str(v) for k, v in files.items() if k != "G"} | {"tmp": str(tmp_path)}
    code, _, err = run(["generate", *(a.format(**values) for a in args), "--n", "1", "--device", "cpu",
                        "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert err.startswith("error:") and err.count("\n") == 1 and message in err


def test_mp4_without_ffmpeg(files, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    code, _, err = run(["generate", "--interpolate", files["a"], files["b"], "--frames", "2", "--n", "1",
                        "--video", tmp_path / "v.mp4", "--device", "cpu", "--out", tmp_path / "o"], capsys)
    assert code == 1 and "pip install imageio-ffmpeg" in err and err.count("\n") == 1


# ----- hdn eval ------------------------------------------------------------------------------
class ChannelMeans(torch.nn.Module):
    """A stand-in for Inception (offline): uint8 images → per-channel means."""

    num_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_eval_writes_json_and_markdown_with_the_protocol(files, tmp_path, capsys, monkeypatch):
    from hyperdomainnet import metrics

    monkeypatch.setattr(metrics, "_inception", ChannelMeans)
    refs = tmp_path / "refs"
    for k in range(3):
        save_image(torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(k)) * 2 - 1, refs / f"{k}.png")
    out = tmp_path / "m.json"
    code, stdout, err = run(["eval", "--domain", f"{files['a']}*0.8", "--clip", "random:tiny", "--n", "4",
                             "--seed", "2", "--truncation", "0.7", "--lpips", "alex", "--lpips-samples", "3", "--lpips-random-backbone",
                             "--reference-dir", refs, "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    p, m = report["protocol"], report["metrics"]
    assert p["clip_model"] == "random:tiny" and p["templates"] == "imagenet (79)" and p["target"] == "style a"
    assert p["samples"] == 4 and p["seeds"] == "2-5" and p["truncation"] == 0.7 and p["noise_mode"] == "random"
    assert p["lpips"] == {"net": "alex", "samples": 3, "max_size": 256, "random_backbone": True}
    assert report["domain"]["scale"] == 0.8 and report["domain"]["kind"] == "domain_vector"
    assert -1 <= m["quality"] <= 1 and 0 <= m["diversity"] <= 2 and m["lpips_diversity"] > 0
    assert m["fid"] > 0 and m["n_reference"] == 3 and m["kid_subset_size"] == 3
    markdown = (tmp_path / "m.md").read_text()
    assert "CLIP random:tiny, templates imagenet (79), 4 samples (seeds 2-5), truncation ψ = 0.7" in markdown
    assert "# Evaluation of style a*0.8" in markdown and "| style a*0.8 | style a |" in markdown

    second = tmp_path / "n.json"
    code, _, err = run(["eval", "--domain", files["d"], "--clip", "random:tiny", "--n", "3", "--lpips", "none",
                        "--target", "Lion", "--templates", "A {}", "--device", "cpu", "--out", second], capsys)
    assert code == 0, err
    assert json.loads(second.read_text())["protocol"]["templates"] == "'A {}'"

    table = tmp_path / "t.md"
    code, stdout, err = run(["eval", "--compare", out, second, "--out", table], capsys)
    assert code == 0, err
    lines = table.read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| style a*0.8 | style a |")
    assert lines[3].startswith("| style d | Lion |")


@pytest.mark.parametrize("args, message", [
    (["--domain", "{tmp}/missing.safetensors"], "does not exist"),
    (["--domain", "{d}", "--templates", "no placeholder"], "--templates"),
    (["--domain", "{a}", "--n", "1"], "--n"),
    (["--domain", "{a}", "--lpips", "resnet"], "--lpips"),
    (["--domain", "{a}", "--reference-dir", "{tmp}/nowhere"], "does not exist"),
    (["--compare", "{pt}"], "metrics file"),
    ([], "--domain"),
])
def test_eval_bad_input_is_a_one_line_error(files, tmp_path, capsys, args, message):
    values = {k: str(v) for k, v in files.items() if k != "G"} | {"tmp": str(tmp_path)}
    code, _, err = run(["eval", *(a.format(**values) for a in args), "--clip", "random:tiny", "--lpips-samples", "2",
                        "--device", "cpu", "--out", tmp_path / "m.json"], capsys)
    assert code == 1
    assert err.startswith("error:") and err.count("\n") == 1 and message in err


def test_eval_without_a_target_says_what_to_pass(files, tmp_path, capsys):
    G = files["G"]
    bare = build_parameterization("domain_vector", G).to_domain_file(G, {}).save(tmp_path / "bare.safetensors")
    code, _, err = run(["eval", "--domain", bare, "--clip", "random:tiny", "--n", "2", "--lpips", "none",
                        "--device", "cpu", "--out", tmp_path / "m.json"], capsys)
    assert code == 1 and "--target TEXT or --reference IMAGE" in err


# ----- existing outputs and unwritable destinations -------------------------------------------
def _no_render(monkeypatch):
    """Fail the test if any rendering starts (destinations must be checked before the work)."""
    from hyperdomainnet import render

    def refuse(*args, **kwargs):
        raise AssertionError("rendered before checking the destination")

    monkeypatch.setattr(render, "render_rows", refuse)
    monkeypatch.setattr(render, "iter_render", refuse)


def test_generate_never_replaces_earlier_results_without_force(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    common = ["generate", "--domain", files["a"], "--n", "1", "--device", "cpu", "--out", out]
    assert run(common, capsys)[0] == 0
    before = (out / "grid.png").read_bytes()
    with monkeypatch.context() as m:
        _no_render(m)
        code, _, err = run([*common, "--seed", "5"], capsys)
    assert code == 1 and err.count("\n") == 1 and "--force" in err and str(out) in err
    assert (out / "grid.png").read_bytes() == before
    code, _, err = run([*common, "--seed", "5", "--force"], capsys)
    assert code == 0, err
    assert (out / "grid.png").read_bytes() != before


@pytest.mark.parametrize("command", ["generate", "prune", "eval", "compare"])
def test_out_under_a_regular_file_is_refused_before_the_work(command, files, tmp_path, capsys, monkeypatch):
    _no_render(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "sub" / ("m.json" if command in ("eval", "compare") else "o.safetensors")
    args = {"generate": ["generate", "--domain", files["a"], "--n", "1", "--device", "cpu"],
            "prune": ["prune", "--domain", files["a"]],
            "eval": ["eval", "--domain", files["a"], "--clip", "random:tiny", "--n", "2", "--lpips", "none",
                     "--device", "cpu"],
            "compare": ["eval", "--compare", files["a"]]}[command]
    code, _, err = run([*args, "--out", target], capsys)
    assert code == 1 and err.count("\n") == 1 and "is a file" in err, err
    assert blocker.read_text() == "x"


def test_prune_and_eval_refuse_to_replace_without_force(files, tmp_path, capsys):
    pruned = tmp_path / "p.safetensors"
    pruned.write_bytes(b"earlier")
    code, _, err = run(["prune", "--domain", files["a"], "--out", pruned], capsys)
    assert code == 1 and "--force" in err and pruned.read_bytes() == b"earlier"
    code, _, err = run(["prune", "--domain", files["a"], "--out", pruned, "--force"], capsys)
    assert code == 0, err
    assert pruned.read_bytes() != b"earlier"

    report = tmp_path / "m.json"
    (tmp_path / "m.md").write_text("earlier")
    code, _, err = run(["eval", "--domain", files["a"], "--clip", "random:tiny", "--n", "2", "--lpips", "none",
                        "--device", "cpu", "--out", report], capsys)
    assert code == 1 and "m.md already exists" in err and "--force" in err and not report.exists()
    table = tmp_path / "t.md"
    table.write_text("earlier")
    code, _, err = run(["eval", "--compare", files["a"], "--out", table], capsys)
    assert code == 1 and "--force" in err and table.read_text() == "earlier"


def test_rows_are_labelled_by_the_domains_metadata_not_the_file_name(files, tmp_path, capsys):
    G = files["G"]
    paths = []
    for run_name, meta in (("run1", {"target": "Pixar"}), ("run2", {"reference": {"file": "joker.png"}}),
                           ("run3", {"name": "my mix", "target": "Sketch"}), ("run4", {})):
        P = build_parameterization("domain_vector", G)
        paths.append((P.to_domain_file(G, meta)).save(tmp_path / run_name / "domain.safetensors"))
    out = tmp_path / "out"
    code, _, err = run(["generate", "--generator", files["pt"], *sum((["--domain", p] for p in paths), []),
                        "--n", "1", "--individual", "--device", "cpu", "--out", out], capsys)
    assert code == 0, err
    manifest = json.loads((out / "generate.json").read_text())
    assert [r["label"] for r in manifest["rows"]] == ["source", "Pixar", "joker.png", "my mix", "domain"]
    assert (out / "Pixar" / "seed0000.png").is_file() and (out / "my_mix" / "seed0000.png").is_file()
    assert all((out / r["folder"] / "seed0000.png").is_file() for r in manifest["rows"])

    reports = []
    for k, path in enumerate(paths[:2]):
        reports.append(tmp_path / f"metrics{k}.json")
        code, _, err = run(["eval", "--generator", files["pt"], "--domain", path, "--clip", "random:tiny", "--n", "2",
                            "--target", "Lion", "--lpips", "none", "--device", "cpu", "--out", reports[-1]], capsys)
        assert code == 0, err
    code, stdout, err = run(["eval", "--compare", *reports, "--out", tmp_path / "t.md"], capsys)
    assert code == 0, err
    rows = (tmp_path / "t.md").read_text().splitlines()[2:]
    assert rows[0].startswith("| Pixar |") and rows[1].startswith("| joker.png |")


def test_generate_precision_is_resolved_recorded_and_close_to_fp32(files, tmp_path, capsys, monkeypatch):
    from hyperdomainnet import device as device_settings

    args = ["generate", "--domain", files["a"], "--seeds", "3-4", "--device", "cpu"]
    code, _, err = run([*args, "--precision", "fp32", "--out", tmp_path / "fp32"], capsys)
    assert code == 0, err
    monkeypatch.setattr(device_settings, "native_bf16", lambda device: True)  # as on a CPU with AMX
    code, out, err = run([*args, "--out", tmp_path / "auto"], capsys)
    assert code == 0 and out.count("in bf16") == 1
    manifests = [json.loads((tmp_path / d / "generate.json").read_text()) for d in ("fp32", "auto")]
    assert [m["precision"] for m in manifests] == ["fp32", "bf16"]
    fp32 = np.asarray(Image.open(tmp_path / "fp32" / "grid.png")).astype(int)
    bf16 = np.asarray(Image.open(tmp_path / "auto" / "grid.png")).astype(int)
    assert 0 < np.abs(fp32 - bf16).mean() < 4  # bf16 rounding moves pixels a little, not the picture
    code, _, err = run([*args, "--precision", "fp8", "--out", tmp_path / "bad"], capsys)
    assert code == 1 and "--precision 'fp8'" in err and not (tmp_path / "bad").exists()
