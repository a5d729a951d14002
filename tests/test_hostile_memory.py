"""Requests too large for memory: ``generate`` streams its outputs chunk by chunk (files equal to
the all-at-once rendering), refuses before rendering what cannot fit (one line with the figure),
and an allocation failure anywhere is one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid

from conftest import perturb, run_cli
from hyperdomainnet import outputs, render
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.images import to_uint8
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.outputs import OutputWriter
from hyperdomainnet.render import Row, render_rows
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from test_hostile_inputs import assert_refused

GEN = "random:16:channel_max=8:n_mlp=2"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("memory")
    G = perturb(load_generator(GEN))
    pt = write_rosinality(G, d / "g.pt")
    G = load_generator(pt)
    G.identity["name"] = str(pt)
    param = build_parameterization("domain_vector", G)
    with torch.no_grad():
        for p in param.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    domain = param.to_domain_file(G, {"target": "Sketch"}).save(d / "domain.safetensors")
    return {"pt": pt, "domain": domain}


def test_streamed_generate_writes_what_rendering_all_at_once_gives(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "generate", "--domain", str(files["domain"]), "--seeds", "3,1,4,1,5",
                           "--batch-size", "3", "--individual", "--no-captions", "--device", "cpu", "--out", str(out))
    assert code == 0, err
    from hyperdomainnet.domain.files import Domain

    G = load_generator(files["pt"])
    images = render_rows(G, [Row("source"), Row("Sketch", Domain.load(files["domain"]))], [3, 1, 4, 1, 5], batch_size=3)
    expected = to_uint8(make_grid(images.flatten(0, 1), nrow=5, padding=2, pad_value=1.0))
    assert np.array_equal(np.asarray(Image.open(out / "grid.png")), expected)
    folders = [row["folder"] for row in json.loads((out / "generate.json").read_text())["rows"]]
    assert np.array_equal(np.asarray(Image.open(out / folders[1] / "seed0004.png")), to_uint8(images[1, 2]))


def test_video_frames_are_rows_side_by_side(tmp_path):
    """Chunks arriving out of row order still give frame r = row r's seeds side by side."""
    images = torch.rand(4, 3, 3, 8, 8) * 2 - 1
    writer = OutputWriter(tmp_path, ["a", "b", "c", "d"], [0, 1, 2], 8, grid=False, individual=False,
                          video=tmp_path / "v.gif", fps=10)
    pairs = [(r, i) for r in (2, 0, 3, 1) for i in range(3)]
    for start in range(0, len(pairs), 5):
        chunk = pairs[start:start + 5]
        writer.add(chunk, torch.stack([images[r, i] for r, i in chunk]))
    assert [f is not None for f in writer.frames] == [True] * 4 and not writer.pending
    for r in range(4):
        assert np.array_equal(writer.frames[r], to_uint8(make_grid(images[r], nrow=3, padding=2, pad_value=1.0)))
    assert writer.finish() == [str(tmp_path / "v.gif")]


def test_generate_holds_one_chunk_of_latents_at_a_time(files, monkeypatch, tmp_path, capsys):
    """W+ codes are drawn per chunk (never for all seeds at once)."""
    sizes: list[int] = []
    original = render.seed_latents

    def counting(G, seeds, *args, **kwargs):
        sizes.append(len(seeds))
        return original(G, seeds, *args, **kwargs)

    monkeypatch.setattr(render, "seed_latents", counting)
    code, _, err = run_cli(capsys, "generate", "--generator", str(files["pt"]), "--n", "40", "--batch-size", "4",
                           "--no-grid", "--individual", "--device", "cpu", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert max(sizes) <= 4 and sum(sizes) == 40
    assert len(list((tmp_path / "o").rglob("seed*.png"))) == 40


@pytest.mark.parametrize("argv, expect", [
    (["--n", "1000000"], "over the 89,478,485 px"),
    (["--n", "2000", "--no-grid"], "nothing to write"),
    (["--interpolate", "{domain}", "{domain}", "--frames", "100000000"], "--frames must be in [2, 10,000]"),
])
def test_oversized_requests_are_refused_before_rendering(files, argv, expect, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("rendered")

    monkeypatch.setattr(render, "iter_render", never)
    args = ["generate", "--generator", str(files["pt"]), "--device", "cpu", "--out", str(tmp_path / "work" / "o"),
            *[a.format(domain=files["domain"]) for a in argv]]
    assert_refused(capsys, tmp_path / "work", args, expect, files["pt"].parent)


def test_request_larger_than_the_available_memory(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outputs, "available_memory", lambda: 100_000)
    args = ["generate", "--generator", str(files["pt"]), "--n", "200", "--device", "cpu",
            "--out", str(tmp_path / "work" / "o")]
    err = assert_refused(capsys, tmp_path / "work", args, "GiB of memory", files["pt"].parent)
    assert "0.0 GiB is available" in err and "1 row(s) × 200 seed(s) at 16 px" in err


@pytest.mark.parametrize("failure", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 983040000 bytes. Error code 12 (Cannot allocate memory)"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_allocation_failure_anywhere_is_one_line(files, failure, tmp_path, capsys, monkeypatch):
    def fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(render, "iter_render", fails)
    args = ["generate", "--generator", str(files["pt"]), "--n", "2", "--device", "cpu",
            "--out", str(tmp_path / "work" / "o")]
    err = assert_refused(capsys, tmp_path / "work", args, "out of memory", files["pt"].parent)
    assert "--batch" in err


def test_first_preview_of_many_targets_renders_in_micro_batches():
    """12 targets, 2 preview samples, --micro-batch 4: adapted renders of ≤ 4 rows (2 targets), the
    same preview as one pass of all 24 rows."""
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.text import TextTrainer

    config = TextAdaptConfig(generator=GEN, clip="random:tiny", source="Photo", targets=[f"style {i}" for i in range(12)],
                             steps=1, batch=2, micro_batch=4, precision="fp32", device="cpu", grid_samples=2)
    trainer = TextTrainer(config, G=perturb(load_generator(GEN)), clip=ClipEnsemble.from_spec("random:tiny"))
    with torch.no_grad():
        for p in trainer.params.parameters():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    batches: list[int] = []
    original = trainer.G.synthesis

    def counting(ws, *args, **kwargs):
        batches.append(ws.shape[0])
        return original(ws, *args, **kwargs)

    trainer.G.synthesis = counting
    images, per_row = trainer.preview()
    assert per_row == 2 and images.shape[0] == 2 * 13 and max(batches) == 4
    trainer.micro_batch.size = 24
    batches.clear()
    torch.testing.assert_close(trainer.preview()[0], images, atol=1e-5, rtol=0)
    assert max(batches) == 24
