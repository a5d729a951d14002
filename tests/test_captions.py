"""Caption bands on grids: row names beside the rows, column headers under the columns; the tiles
stay where they are, and --no-captions leaves the bare grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from hyperdomainnet import load_generator
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.images import save_grid

GEN = "random:32:channel_max=16:n_mlp=2"


def ink(pixels: np.ndarray) -> bool:
    """Whether a white band region holds text (dark pixels)."""
    return bool((pixels.min(axis=-1) < 128).any())


def test_rows_and_columns_are_written_beside_and_under_their_tiles(tmp_path: Path) -> None:
    images = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bare = np.asarray(Image.open(save_grid(images, tmp_path / "bare.png", nrow=3)))
    captioned = np.asarray(Image.open(save_grid(images, tmp_path / "c.png", nrow=3, rows=["source", "Pixar"],
                                                columns=["photo", "reconstruction", "Pixar"])))
    h, w = bare.shape[:2]
    assert captioned.shape[0] > h and captioned.shape[1] > w
    assert np.array_equal(captioned[:h, :w], bare)  # the tiles are untouched
    for r in range(2):  # each row's name sits level with its row
        assert ink(captioned[2 + r * 42:2 + r * 42 + 40, w:])
    for c in range(3):  # each header sits under its column
        assert ink(captioned[h:, 2 + c * 42:2 + c * 42 + 40])
    assert not ink(captioned[h:, w:])  # the corner stays blank
    only_rows = np.asarray(Image.open(save_grid(images, tmp_path / "r.png", nrow=3, rows=["source", "Pixar"])))
    assert only_rows.shape[0] == h and np.array_equal(only_rows[:, :w], bare)


@pytest.mark.parametrize("captions", [True, False])
def test_generate_names_each_row_unless_told_not_to(captions: bool, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    G = load_generator(GEN)
    domain = build_parameterization("domain_vector", G).to_domain_file(G, {"target": "Sketch"}).save(
        tmp_path / "d.safetensors")
    code, _, err = run_cli(capsys, "generate", "--generator", GEN, "--domain", str(domain), "--n", "2", "--device",
                           "cpu", "--out", str(tmp_path / "g"), *([] if captions else ["--no-captions"]))
    assert code == 0, err
    grid = np.asarray(Image.open(tmp_path / "g" / "grid.png"))
    tiles_w = 2 * 34 + 2
    assert grid.shape[0] == 2 * 34 + 2 and (grid.shape[1] > tiles_w) == captions
    if captions:
        assert all(ink(grid[2 + r * 34:2 + r * 34 + 32, tiles_w:]) for r in range(2))


def test_training_previews_name_the_source_and_target_rows(tmp_path: Path) -> None:
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.loop import run_training
    from hyperdomainnet.training.text import TextTrainer

    clip = ClipEnsemble.from_spec("random:tiny")
    widths = {}
    for captions in (True, False):
        cfg = TextAdaptConfig(generator=GEN, clip="random:tiny", target="Sketch", steps=1, batch=2, device="cpu",
                              grid_samples=2, captions=captions)
        trainer = TextTrainer(cfg, G=load_generator(GEN), clip=clip)
        assert trainer.preview_rows == ["source", "Sketch"]
        run_training(trainer, tmp_path / str(captions), progress=False)
        grid = np.asarray(Image.open(tmp_path / str(captions) / "grid.png"))
        widths[captions] = grid.shape[1]
        if captions:
            assert all(ink(grid[2 + r * 34:2 + r * 34 + 32, 2 * 34 + 2:]) for r in range(2))
    assert widths[False] == 2 * 34 + 2 < widths[True]
