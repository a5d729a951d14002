"""Image loading edge cases, writing, grids, hashing and square fitting."""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from hyperdomainnet import images
from hyperdomainnet.errors import HDNError
from hyperdomainnet.images import fit_square, image_sha256, load_image, save_grid, save_image, to_pil, to_tensor

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def rgb255(t: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    """The 8-bit RGB value of pixel (y, x) of a (1, 3, H, W) tensor in [−1, 1]."""
    return tuple(int(v) for v in ((t[0, :, y, x] + 1) * 127.5).round().tolist())


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def halves(w: int, h: int, first=RED, second=BLUE) -> Image.Image:
    """Left half ``first``, right half ``second``."""
    img = Image.new("RGB", (w, h), second)
    img.paste(first, (0, 0, w // 2, h))
    return img


def one_line_error(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


# ----- loading -------------------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the stored left half ends up on top
    halves(40, 20).save(path, exif=exif, quality=95)
    t = load_image(path, 20)
    assert t.shape == (1, 3, 20, 20)
    assert close(rgb255(t, 2, 10), RED, 40) and close(rgb255(t, 17, 10), BLUE, 40)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4] = (255, 0, 0, 255)
    arr[:, 4:6] = (0, 0, 255, 128)
    path = tmp_path / "alpha.png"
    Image.fromarray(arr).save(path)
    t = load_image(path, 8)
    assert rgb255(t, 3, 1) == RED
    assert close(rgb255(t, 3, 4), (127, 127, 255), 2)
    assert rgb255(t, 3, 7) == WHITE


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_colour_modes_become_rgb(tmp_path, mode):
    src = halves(16, 16, first=WHITE, second=(0, 0, 0)) if mode in ("L", "1") else halves(16, 16)
    path = tmp_path / ("img.jpg" if mode == "CMYK" else "img.png")
    src.convert(mode).save(path, quality=100)
    t = load_image(path, 16)
    assert t.shape == (1, 3, 16, 16)
    assert close(rgb255(t, 8, 2), src.getpixel((2, 8)), 16)
    assert close(rgb255(t, 8, 13), src.getpixel((13, 8)), 16)


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    t = load_image(path, 8)
    assert rgb255(t, 4, 1) == RED and rgb255(t, 4, 6) == WHITE


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr = np.zeros((4, 4), np.uint16)
    arr[0], arr[1], arr[2], arr[3] = 65535, 32896, 1000, 0
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    t = load_image(path, 4)
    assert [rgb255(t, y, 1)[0] for y in range(4)] == [255, 128, 4, 0]
    assert torch.equal(t[0, 0], t[0, 2])


def test_crop_keeps_the_centre_and_pad_letterboxes(tmp_path):
    img = Image.new("RGB", (40, 20), GREEN)
    img.paste(RED, (0, 0, 10, 20))
    img.paste(BLUE, (30, 0, 40, 20))
    path = tmp_path / "wide.png"
    img.save(path)
    crop = load_image(path, 20, fit="crop")
    assert all(close(rgb255(crop, y, x), GREEN, 30) for y in (0, 10, 19) for x in (1, 10, 18))
    pad = load_image(path, 20, fit="pad")
    assert rgb255(pad, 1, 10) == WHITE and rgb255(pad, 18, 10) == WHITE
    assert close(rgb255(pad, 10, 1), RED, 30) and close(rgb255(pad, 10, 18), BLUE, 30)
    assert close(rgb255(pad, 10, 10), GREEN, 30)
    with pytest.raises(ValueError):
        load_image(path, 20, fit="stretch")  # type: ignore[arg-type]


def test_small_images_are_upscaled_with_a_warning(tmp_path):
    path = tmp_path / "tiny.png"
    halves(8, 8).save(path)
    with pytest.warns(UserWarning, match="upscaling"):
        t = load_image(path, 32)
    assert t.shape == (1, 3, 32, 32)
    assert close(rgb255(t, 16, 2), RED) and close(rgb255(t, 16, 29), BLUE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, 8).shape == (1, 3, 8, 8)


def test_large_jpegs_are_decoded_at_reduced_scale(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    halves(1024, 512).save(path)
    seen = []
    original = images._to_rgb
    monkeypatch.setattr(images, "_to_rgb", lambda img, p: seen.append(img.size) or original(img, p))
    t = load_image(path, 64)
    assert t.shape == (1, 3, 64, 64)
    assert seen == [(128, 64)]
    assert close(rgb255(t, 32, 2), RED, 30) and close(rgb255(t, 32, 61), BLUE, 30)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "garbage", "truncated", "text"])
def test_bad_inputs_raise_one_line_errors(tmp_path, case):
    path = tmp_path / f"{case}.png"
    words = {"missing": "does not exist", "directory": "is a directory", "empty": "empty",
             "garbage": "not an image format", "truncated": "truncated or corrupt",
             "text": "not an image format"}[case]
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.touch()
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a picture\n" * 20)
    with pytest.raises(HDNError) as exc:
        load_image(path, 16)
    one_line_error(exc, str(path.name), words)


@pytest.mark.parametrize("side", [40, 64])  # over the limit (own check) / over twice it (Pillow's)
def test_decompression_bombs_are_refused(tmp_path, monkeypatch, side):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(HDNError) as exc:
        load_image(path, 16)
    one_line_error(exc, "bomb.png", "decompression-bomb", "MAX_IMAGE_PIXELS")


# ----- writing, grids, hashing ---------------------------------------------------------------
def test_save_image_round_trips_atomically(tmp_path):
    t = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = save_image(t, tmp_path / "out" / "img.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = load_image(out, 12, fit="pad")[..., :, 1:11]
    assert (back - t).abs().max() <= 1 / 127.5 + 1e-6
    assert [p.name for p in out.parent.iterdir()] == ["img.png"]
    save_image(t[0], tmp_path / "img.jpg")
    assert Image.open(tmp_path / "img.jpg").format == "JPEG"
    with pytest.raises(ValueError):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "x.png")


def test_png_is_lossless_at_the_fast_level(tmp_path):
    """PNGs are written at zlib level PNG_COMPRESS_LEVEL and read back to the very 8-bit pixels."""
    t = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1
    path = save_image(t, tmp_path / "x.png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(to_pil(t)))
    assert zlib_level(path) == 0   # the zlib header's FLEVEL field: 0 = the fastest levels


def zlib_level(path) -> int:
    """FLEVEL (bits 6–7 of the zlib FLG byte) of a PNG's first IDAT chunk."""
    data = path.read_bytes()
    at = data.index(b"IDAT") + 4
    return data[at + 1] >> 6


def test_save_grid_shape_and_padding(tmp_path):
    imgs = torch.stack([torch.full((3, 8, 6), -1.0 + 0.3 * i) for i in range(6)])
    path = save_grid(imgs, tmp_path / "grid.png", nrow=3, padding=2)
    grid = to_tensor(Image.open(path))[0]
    assert grid.shape == (3, 2 * (8 + 2) + 2, 3 * (6 + 2) + 2)
    assert torch.all(grid[:, :2] == 1) and torch.all(grid[:, :, :2] == 1) and torch.all(grid[:, 10:12] == 1)
    assert (grid[:, 12:20, 18:24] - imgs[5]).abs().max() <= 1 / 127.5  # row 1, column 2 (8-bit rounding)
    assert (grid[:, 2:10, 10:16] - imgs[1]).abs().max() <= 1 / 127.5


def test_image_sha256_hashes_the_bytes(tmp_path):
    path = tmp_path / "a.png"
    halves(4, 4).save(path)
    assert image_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(HDNError):
        image_sha256(tmp_path / "nope.png")


@pytest.mark.parametrize("size, fit, box", [((60, 40), "crop", (10, 0, 50, 40)), ((40, 60), "crop", (0, 10, 40, 50)),
                                            ((30, 30), "crop", (0, 0, 30, 30))])
def test_fit_square_crops_without_resampling(size, fit, box) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(fit_square(img, fit)), np.asarray(img.crop(box)))


def test_fit_square_pads_with_white() -> None:
    img = halves(40, 20)
    out = np.asarray(fit_square(img, "pad"))
    assert out.shape == (40, 40, 3)
    assert np.array_equal(out[10:30], np.asarray(img)) and (out[:10] == 255).all() and (out[30:] == 255).all()
