"""Every ``hdn`` command against a corpus of bad inputs: each must end with a non-zero exit status,
exactly one line on stderr, no traceback, and nothing written (no output, no temporary file).

Commands run in-process with tiny settings (random 32 px generator, ``random:tiny`` CLIP, 2 steps),
so a bad input that is wrongly accepted costs seconds, not a training run.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import perturb, run_cli
from hyperdomainnet.fileformat import META_KEY
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.images import save_image
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from hyperdomainnet.loaders import load_generator

TINY = ["--clip", "random:tiny", "--device", "cpu"]
TRAIN = [*TINY, "--generator", "{pt}", "--steps", "2", "--batch", "2", "--no-progress"]


def _rewrite(src: Path, dst: Path, tensor_fn=None, meta_fn=None) -> Path:
    """A copy of a safetensors file with its tensors and/or metadata changed (bypassing our writer)."""
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    if tensor_fn:
        tensors = {k: tensor_fn(v) for k, v in tensors.items()}
    if meta_fn:
        meta = meta_fn(meta)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Good files to combine with the bad ones, and the bad ones."""
    d = tmp_path_factory.mktemp("corpus")
    G = perturb(load_generator("random:32:channel_max=16:n_mlp=2"))
    pt = write_rosinality(G, d / "g.pt")
    G = load_generator(pt)
    G.identity["name"] = str(pt)  # domain files name the generator by its full path
    domain = (build_parameterization("domain_vector", G).to_domain_file(G, {"target": "Sketch"})).save(d / "domain.safetensors")
    net = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1)
    hypernet = net.save(d / "hypernet.safetensors", {"clip_model": "random:tiny", "input": "text",
                                                      "generator": dict(G.identity)})
    image = save_image(torch.zeros(3, 40, 40), d / "image.png")
    files = {"pt": pt, "domain": domain, "hypernet": hypernet, "image": image}
    files["truncated_pt"] = d / "truncated.pt"
    files["truncated_pt"].write_bytes(pt.read_bytes()[:300])
    files["truncated_domain"] = d / "truncated.safetensors"
    files["truncated_domain"].write_bytes(domain.read_bytes()[:200])
    files["garbage_domain"] = d / "garbage.safetensors"
    files["garbage_domain"].write_bytes(b"\x00\x01 not a safetensors file" * 10)
    files["empty"] = d / "empty.safetensors"
    files["empty"].write_bytes(b"")
    files["nan_domain"] = _rewrite(domain, d / "nan.safetensors", lambda t: torch.full_like(t, float("nan")))
    files["inf_domain"] = _rewrite(domain, d / "inf.safetensors", lambda t: t + float("inf"))
    files["meta_not_json"] = _rewrite(domain, d / "notjson.safetensors", meta_fn=lambda m: {META_KEY: "{not json"})
    files["meta_missing_key"] = _rewrite(domain, d / "nokind.safetensors", meta_fn=lambda m: {
        META_KEY: json.dumps({k: v for k, v in json.loads(m[META_KEY]).items() if k != "domain_layout"})})
    files["text_as_png"] = d / "text.png"
    files["text_as_png"].write_text("this is not an image")
    files["svg"] = d / "picture.svg"
    files["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    files["truncated_png"] = d / "truncated.png"
    files["truncated_png"].write_bytes(image.read_bytes()[:60])
    files["folder"] = d / "folder"
    files["folder"].mkdir()
    files["blocker"] = d / "blocker"
    files["blocker"].write_text("a regular file")
    files["bad_json"] = d / "metrics.json"
    files["bad_json"].write_text("{ not json")
    files["empty_list"] = d / "empty.txt"
    files["empty_list"].write_text("\n")
    files["domain_list"] = d / "domains.txt"
    files["domain_list"].write_text("Sketch - Photo\nPixar - Photo\n")
    files["missing"] = d / "missing.safetensors"
    from hyperdomainnet.metrics import REPORT_FORMAT

    files["metrics_no_domain"] = d / "nodomain.json"
    files["metrics_no_domain"].write_text(json.dumps({"format": REPORT_FORMAT, "protocol": {}, "metrics": {}}))
    files["junk_pt"] = d / "j.pt"
    files["junk_pt"].write_text("junk\n")  # echo junk > j.pt
    return files


def case(name: str, expect: str, *argv: str):
    """One corpus entry: the command line and a fragment its error must hold (the right error, not
    any error)."""
    return pytest.param(list(argv), expect, id=name)


GEN = ["--generator", "{pt}"]
EVAL = [*TINY, *GEN, "--lpips", "none", "--n", "2"]
IMAGE_TRAIN = [*TRAIN, "--lpips-random-backbone", "--pnorm-samples", "8", "--invert-steps", "1"]
HYPER_TRAIN = [*TRAIN, "--mapper-clip", "random:tiny", "--width", "16", "--depth", "1", "--head-depth", "1"]

CASES = [
    # ----- hdn generate
    case("generate-missing-domain", "does not exist", "generate", "--domain", "{missing}", "--out", "{out}"),
    case("generate-truncated-domain", "truncated", "generate", "--domain", "{truncated_domain}", "--out", "{out}"),
    case("generate-garbage-domain", "is binary data of an unknown kind; expected a domain file", "generate", "--domain", "{garbage_domain}",
         "--out", "{out}"),
    case("generate-empty-domain", "is an empty file; expected a domain file", "generate", "--domain", "{empty}", "--out", "{out}"),
    case("generate-generator-as-domain", "is a ZIP archive (a PyTorch .pt checkpoint?); expected a domain file",
         "generate", "--domain", "{pt}", "--out", "{out}"),
    case("generate-image-as-domain", "image.png is a PNG image; expected a domain file", "generate", "--domain",
         "{image}", "--out", "{out}"),
    case("generate-image-as-generator", "image.png is a PNG image, not a PyTorch checkpoint", "generate",
         "--generator", "{image}", "--out", "{out}"),
    case("generate-image-as-hypernet", "image.png is a PNG image; expected a HyperDomainNet file", "generate",
         "--hypernet", "{image}", "--text", "Pixar", "--out", "{out}"),
    case("generate-folder-as-domain", "directory", "generate", "--domain", "{folder}", "--out", "{out}"),
    case("generate-nan-domain", "NaN or inf", "generate", "--domain", "{nan_domain}", "--out", "{out}"),
    case("generate-inf-domain", "NaN or inf", "generate", "--domain", "{inf_domain}", "--out", "{out}"),
    case("generate-metadata-not-json", "metadata", "generate", "--domain", "{meta_not_json}", "--out", "{out}"),
    case("generate-metadata-missing-key", "domain_layout", "generate", "--domain", "{meta_missing_key}",
         "--out", "{out}"),
    case("generate-out-under-file", "is a file", "generate", "--domain", "{domain}", "--out", "{blocker}/out"),
    case("generate-out-is-file", "is a file", "generate", "--domain", "{domain}", "--out", "{blocker}"),
    case("generate-truncation-nan", "--truncation", "generate", "--domain", "{domain}", "--truncation", "nan",
         "--out", "{out}"),
    case("generate-truncation-inf", "--truncation", "generate", "--domain", "{domain}", "--truncation", "inf",
         "--out", "{out}"),
    case("generate-fps-inf", "--fps", "generate", "--interpolate", "{domain}", "{domain}", "--fps", "inf",
         "--out", "{out}"),
    case("generate-strength-nan", "finite", "generate", "--domain", "{domain}*nan", "--out", "{out}"),
    case("generate-n-zero", "--n", "generate", "--domain", "{domain}", "--n", "0", "--out", "{out}"),
    case("generate-n-not-a-number", "'--n'", "generate", "--domain", "{domain}", "--n", "many", "--out", "{out}"),
    case("generate-unknown-option", "--colour", "generate", "--domain", "{domain}", "--colour", "red",
         "--out", "{out}"),
    case("generate-missing-generator", "not an existing file", "generate", "--generator", "{missing}",
         "--out", "{out}"),
    case("generate-truncated-generator", "truncated", "generate", "--generator", "{truncated_pt}", "--out", "{out}"),
    case("generate-domain-as-generator", "not a generator", "generate", "--generator", "{domain}", "--out", "{out}"),
    case("generate-hypernet-is-a-domain", "not a HyperDomainNet file", "generate", "--hypernet", "{domain}",
         "--text", "Pixar", "--out", "{out}"),
    case("generate-empty-prompt", "empty", "generate", "--hypernet", "{hypernet}", "--text", " ", "--out", "{out}"),
    case("generate-video-unsupported", ".gif or .mp4", "generate", "--interpolate", "{domain}", "{domain}",
         "--video", "{out}.avi", "--out", "{out}"),
    # ----- hdn prune
    case("prune-missing", "does not exist", "prune", "--domain", "{missing}", "--out", "{out}.safetensors"),
    case("prune-truncated", "truncated", "prune", "--domain", "{truncated_domain}", "--out", "{out}.safetensors"),
    case("prune-folder", "directory", "prune", "--domain", "{folder}", "--out", "{out}.safetensors"),
    case("prune-nan-domain", "NaN or inf", "prune", "--domain", "{nan_domain}", "--out", "{out}.safetensors"),
    case("prune-keep-nan", "--keep", "prune", "--domain", "{domain}", "--keep", "nan", "--out", "{out}.safetensors"),
    case("prune-keep-above-one", "--keep", "prune", "--domain", "{domain}", "--keep", "2",
         "--out", "{out}.safetensors"),
    case("prune-out-under-file", "is a file", "prune", "--domain", "{domain}", "--out", "{blocker}/p.safetensors"),
    case("prune-out-is-folder", "is a directory", "prune", "--domain", "{domain}", "--out", "{folder}"),
    # ----- hdn eval
    case("eval-missing-domain", "does not exist", "eval", "--domain", "{missing}", *EVAL, "--out", "{out}.json"),
    case("eval-truncated-domain", "truncated", "eval", "--domain", "{truncated_domain}", *EVAL,
         "--out", "{out}.json"),
    case("eval-nan-domain", "NaN or inf", "eval", "--domain", "{nan_domain}", *EVAL, "--out", "{out}.json"),
    case("eval-empty-target", "--target", "eval", "--domain", "{domain}", "--target", " ", *EVAL,
         "--out", "{out}.json"),
    case("eval-unsupported-reference", "not an image format", "eval", "--domain", "{domain}", "--reference",
         "{svg}", *EVAL, "--out", "{out}.json"),
    case("eval-folder-reference", "is a directory", "eval", "--domain", "{domain}", "--reference", "{folder}",
         *EVAL, "--out", "{out}.json"),
    case("eval-empty-reference-dir", "no images", "eval", "--domain", "{domain}", "--reference-dir", "{folder}",
         *EVAL, "--out", "{out}.json"),
    case("eval-truncation-nan", "--truncation", "eval", "--domain", "{domain}", "--truncation", "nan", *EVAL,
         "--out", "{out}.json"),
    case("eval-garbage-clip-file", "state dict", "eval", "--domain", "{domain}", *GEN, "--clip",
         "file:tiny:{garbage_domain}", "--device", "cpu", "--lpips", "none", "--n", "2", "--out", "{out}.json"),
    case("eval-out-under-file", "is a file", "eval", "--domain", "{domain}", *EVAL, "--out", "{blocker}/m.json"),
    case("eval-compare-not-json", "metrics file", "eval", "--compare", "{bad_json}", "--out", "{out}.md"),
    case("eval-compare-no-domain", "lacks domain", "eval", "--compare", "{metrics_no_domain}", "--out", "{out}.md"),
    case("eval-compare-folder", "metrics file", "eval", "--compare", "{folder}", "--out", "{out}.md"),
    # ----- hdn info / convert / export / download / models
    case("info-missing", "does not exist", "info", "{missing}"),
    case("info-truncated-domain", "truncated", "info", "{truncated_domain}"),
    case("info-truncated-generator", "truncated", "info", "{truncated_pt}"),
    case("info-folder", "is a directory", "info", "{folder}"),
    case("info-nan-domain", "NaN or inf", "info", "{nan_domain}"),
    case("info-metadata-not-json", "metadata", "info", "{meta_not_json}"),
    case("convert-missing", "does not exist", "convert", "{missing}", "--out", "{out}.safetensors"),
    case("convert-truncated", "truncated", "convert", "{truncated_pt}", "--out", "{out}.safetensors"),
    case("convert-image", "not a readable PyTorch checkpoint", "convert", "{image}", "--out", "{out}.safetensors"),
    case("convert-out-under-file", "is a file", "convert", "{pt}", "--out", "{blocker}/c.safetensors"),
    case("export-missing", "not an existing file", "export", "{missing}", "--out", "{out}.pt"),
    case("export-truncated", "truncated", "export", "{truncated_pt}", "--out", "{out}.pt"),
    case("export-out-under-file", "is a file", "export", "{pt}", "--out", "{blocker}/e.pt"),
    case("export-pickle-as-safetensors", ".safetensors", "export", "{pt}", "--out", "{out}.safetensors"),
    case("download-unknown", "unknown zoo name", "download", "no-such-model"),
    case("download-nothing", "give zoo names to download, or --all", "download"),
    case("download-names-and-all", "not both", "download", "ffhq", "--all"),
    case("models-unknown-option", "--everything", "models", "--everything"),
    # ----- hdn invert / stylize
    case("invert-missing", "does not exist", "invert", "{missing}.png", *GEN, "--out", "{out}"),
    case("invert-unsupported", "not an image format", "invert", "{svg}", *GEN, "--out", "{out}"),
    case("invert-text-as-png", "not an image format", "invert", "{text_as_png}", *GEN, "--out", "{out}"),
    case("invert-truncated-png", "truncated", "invert", "{truncated_png}", *GEN, "--out", "{out}"),
    case("invert-junk-encoder", "not a readable PyTorch checkpoint", "invert", "{image}", "--encoder",
         "{junk_pt}", "--out", "{out}"),
    case("invert-truncated-encoder", "truncated", "invert", "{image}", "--encoder", "{truncated_pt}",
         "--out", "{out}"),
    case("invert-generator-as-encoder", "not an encoder", "invert", "{image}", "--encoder", "{pt}", "--out", "{out}"),
    case("stylize-junk-encoder", "not a readable PyTorch checkpoint", "stylize", "--domain", "{domain}", "--image",
         "{image}", "--encoder", "{junk_pt}", "--out", "{out}"),
    case("invert-folder", "holds no photos", "invert", "{folder}", *GEN, "--out", "{out}"),
    case("invert-out-under-file", "is a file", "invert", "{image}", *GEN, "--steps", "1", "--lpips-random-backbone",
         "--pnorm-samples", "8", "--device", "cpu", "--out", "{blocker}/x"),
    case("stylize-missing-domain", "does not exist", "stylize", "--domain", "{missing}", "--image", "{image}",
         "--out", "{out}"),
    case("stylize-truncated-domain", "truncated", "stylize", "--domain", "{truncated_domain}", "--image", "{image}",
         "--out", "{out}"),
    case("stylize-unsupported-image", "not an image format", "stylize", "--domain", "{domain}", "--image", "{svg}",
         *GEN, "--out", "{out}"),
    # ----- hdn adapt text / image
    case("adapt-text-empty-target", "target prompt is empty", "adapt", "text", *TRAIN, "--target", "",
         "--out", "{out}"),
    case("adapt-text-lr-inf", "lr", "adapt", "text", *TRAIN, "--target", "Sketch", "--lr", "inf", "--out", "{out}"),
    case("adapt-text-lr-nan", "lr", "adapt", "text", *TRAIN, "--target", "Sketch", "--lr", "nan", "--out", "{out}"),
    case("adapt-text-betas", "betas", "adapt", "text", *TRAIN, "--target", "Sketch", "--betas", "5,5",
         "--out", "{out}"),
    case("adapt-text-loss-inf", "direction", "adapt", "text", *TRAIN, "--target", "Sketch", "--loss",
         "direction=inf", "--out", "{out}"),
    case("adapt-text-truncated-generator", "truncated", "adapt", "text", *TINY, "--generator", "{truncated_pt}",
         "--steps", "2", "--target", "Sketch", "--no-progress", "--out", "{out}"),
    case("adapt-text-out-under-file", "is a file", "adapt", "text", *TRAIN, "--target", "Sketch",
         "--out", "{blocker}/run"),
    case("adapt-image-missing", "does not exist", "adapt", "image", *IMAGE_TRAIN, "--image", "{missing}.png",
         "--out", "{out}"),
    case("adapt-image-unsupported", "not an image format", "adapt", "image", *IMAGE_TRAIN, "--image", "{svg}",
         "--out", "{out}"),
    case("adapt-image-folder", "is a directory", "adapt", "image", *IMAGE_TRAIN, "--image", "{folder}",
         "--out", "{out}"),
    # ----- hdn hypernet train / eval
    case("hypernet-train-missing-list", "neither a file nor a built-in list", "hypernet", "train", *HYPER_TRAIN,
         "--domains", "{missing}.txt", "--out", "{out}"),
    case("hypernet-train-empty-list", "has no domains", "hypernet", "train", *HYPER_TRAIN, "--domains",
         "{empty_list}", "--out", "{out}"),
    case("hypernet-train-folder-list", "is a directory", "hypernet", "train", *HYPER_TRAIN, "--domains", "{folder}",
         "--out", "{out}"),
    case("hypernet-train-lr-inf", "lr", "hypernet", "train", *HYPER_TRAIN, "--domains", "{domain_list}", "--lr",
         "inf", "--out", "{out}"),
    case("hypernet-eval-missing", "does not exist", "hypernet", "eval", "--hypernet", "{missing}", *TINY,
         "--out", "{out}"),
    case("hypernet-eval-truncated", "truncated", "hypernet", "eval", "--hypernet", "{truncated_domain}", *TINY,
         "--out", "{out}"),
    case("hypernet-eval-domain-file", "not a HyperDomainNet file", "hypernet", "eval", "--hypernet", "{domain}",
         *TINY, "--out", "{out}"),
    case("hypernet-eval-samples-one", "--samples", "hypernet", "eval", "--hypernet", "{hypernet}", *TINY,
         "--seen", "{domain_list}", "--samples", "1", "--out", "{out}"),
    case("hypernet-eval-out-under-file", "is a file", "hypernet", "eval", "--hypernet", "{hypernet}", *TINY,
         "--seen", "{domain_list}", "--unseen", "{domain_list}", "--samples", "2", "--out", "{blocker}/ev"),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("argv, expect", CASES)
def test_bad_input_is_one_line_and_writes_nothing(argv, expect, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    values = {k: str(v) for k, v in corpus.items()} | {"out": str(tmp_path / "work" / "out")}
    args = [a.format(**values) for a in argv]
    before = _snapshot(corpus["pt"].parent)
    code, out, err = run_cli(capsys, *args)
    assert code != 0, f"accepted: {out}"
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expect.lower() in err.lower(), err
    assert "Traceback" not in out + err
    assert _snapshot(corpus["pt"].parent) == before  # inputs untouched, nothing written beside them
    remembered = tmp_path / "home" / "hashes"  # the cache's digests of the inputs it read: not outputs
    written = [p for p in tmp_path.rglob("*") if p.is_file() and remembered not in p.parents]
    assert not written, f"half-written: {written}"
