"""Image loading edge cases, writing, grids, hashing and the FFHQ alignment geometry."""
from __future__ import annotations

import hashlib
import math
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from hyperdomainnet import images
from hyperdomainnet.errors import HDNError
from hyperdomainnet.images import (align_face, align_with_landmarks, ffhq_quad, image_sha256, load_image,
                                   save_grid, save_image, to_pil, to_tensor)

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


# ----- FFHQ alignment ------------------------------------------------------------------------
def landmarks(eye_l, eye_r, mouth_l, mouth_r, angle=0.0, origin=(0.0, 0.0)) -> np.ndarray:
    """68 iBUG landmarks with the given eye centres and mouth corners, rotated by ``angle`` (rad)."""
    lm = np.tile(np.mean([eye_l, eye_r, mouth_l, mouth_r], axis=0), (68, 1))
    ring = np.array([[-3, 0], [-1, -1], [1, -1], [3, 0], [1, 1], [-1, 1]], float)
    lm[36:42], lm[42:48] = np.array(eye_l) + ring, np.array(eye_r) + ring
    lm[48], lm[54] = mouth_l, mouth_r
    return rotate(lm, angle, origin)


def rotate(points, angle, origin):
    c, s = math.cos(angle), math.sin(angle)
    p = np.asarray(points, float) - origin
    return p @ np.array([[c, s], [-s, c]]) + origin


def test_ffhq_quad_geometry():
    lm = landmarks((40, 50), (60, 50), (42, 70), (58, 70))
    quad, qsize = ffhq_quad(lm)
    np.testing.assert_allclose(quad, [[10, 12], [10, 92], [90, 92], [90, 12]], atol=1e-9)
    assert qsize == pytest.approx(80)
    angle, origin = 0.6, np.array([7.0, -3.0])
    quad_r, qsize_r = ffhq_quad(rotate(lm, angle, origin) * 2.5)
    np.testing.assert_allclose(quad_r, rotate(quad, angle, origin) * 2.5, atol=1e-9)
    assert qsize_r == pytest.approx(200)
    with pytest.raises(ValueError):
        ffhq_quad(np.zeros((5, 2)))


def centroid(arr: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    mask = np.all(np.abs(arr.astype(int) - colour) < 90, axis=-1)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 3, f"marker {colour} not found"
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("angle,canvas", [(0.0, 200), (math.radians(30), 200), (math.radians(-20), 96)])
def test_align_with_landmarks_puts_the_face_in_the_ffhq_frame(angle, canvas):
    origin = (50.0, 50.0)
    eye_l, eye_r, mouth = rotate([[40, 50], [60, 50], [50, 70]], angle, origin)
    img = Image.new("RGB", (canvas, canvas), (120, 120, 120))
    draw = ImageDraw.Draw(img)
    for (x, y), colour in ((eye_l, RED), (eye_r, BLUE), (mouth, GREEN)):
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    lm = landmarks((40, 50), (60, 50), (42, 70), (58, 70), angle, origin)
    out = np.asarray(align_with_landmarks(img, lm, size=64, transform_size=256))
    assert out.shape == (64, 64, 3)
    assert not np.any(np.all(out < 40, axis=-1)), "area outside the photo must be reflect-padded, not black"
    # quad (10, 12)–(90, 92) maps onto the 64 px square: scale 0.8
    np.testing.assert_allclose(centroid(out, RED), [24, 30.4], atol=1.5)
    np.testing.assert_allclose(centroid(out, BLUE), [40, 30.4], atol=1.5)
    np.testing.assert_allclose(centroid(out, GREEN), [32, 46.4], atol=1.5)


class FakeLandmarker:
    def __init__(self, faces):
        self.faces = faces

    def get_landmarks_from_image(self, arr):
        assert arr.dtype == np.uint8 and arr.ndim == 3
        return self.faces


def test_align_face_detects_and_aligns(tmp_path, monkeypatch):
    path = tmp_path / "face.png"
    Image.new("RGB", (120, 120), (90, 90, 90)).save(path)
    small = landmarks((10, 10), (14, 10), (10, 14), (14, 14))
    big = landmarks((40, 50), (60, 50), (42, 70), (58, 70))
    monkeypatch.setattr(images, "_landmark_model", lambda device: FakeLandmarker([small, big]))
    t = align_face(path, size=32)
    assert t.shape == (1, 3, 32, 32) and t.min() >= -1 and t.max() <= 1
    monkeypatch.setattr(images, "_landmark_model", lambda device: FakeLandmarker(None))
    with pytest.raises(HDNError) as exc:
        align_face(path, size=32)
    one_line_error(exc, "no face found")


def test_align_face_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # makes `import face_alignment` fail
    images._landmark_model.cache_clear()
    with pytest.raises(HDNError) as exc:
        align_face(Image.new("RGB", (64, 64)), size=32)
    one_line_error(exc, "pip install face-alignment")
    images._landmark_model.cache_clear()
