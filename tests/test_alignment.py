"""FFHQ face alignment: the crop geometry, dlib landmarks, the landmark model download, and the
default alignment of photos for face encoders with the research code's 256 px resize."""
from __future__ import annotations

import bz2
import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from conftest import run_cli
from encoder_standins import write_landmark_standin, write_restyle_standin
from hyperdomainnet import alignment, zoo
from hyperdomainnet.alignment import align_face, align_with_landmarks, detect_landmarks, ffhq_quad
from hyperdomainnet.encoders import load_encoder
from hyperdomainnet.encoders.preprocess import encoder_input
from hyperdomainnet.errors import ConfigError, DownloadError, FileFormatError
from hyperdomainnet.latent import Latent
from hyperdomainnet.loaders import load_generator
from test_download import REV, closed_url, hub  # noqa: F401 (hub: a fixture)
from test_stylize import write_photo

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
TINY_G = "random:32:channel_max=16:n_mlp=2:style_dim=32"
CPU = ["--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    alignment._predictor.cache_clear()
    return tmp_path / "home"


def zoo_sources(monkeypatch: pytest.MonkeyPatch, name: str, *urls: str, sha256: str | None = None) -> None:
    """The zoo entry ``name`` with other URLs (none given: its own) and SHA-256 (a stand-in's, whose
    size the entry then does not pin)."""
    original = zoo.resolve

    def resolve(spec):
        entry = original(spec)
        if entry.name != name:
            return entry
        return replace(entry, urls=urls or entry.urls, sha256=sha256 or entry.sha256,
                       size=None if sha256 else entry.size)

    monkeypatch.setattr(zoo, "resolve", resolve)


def landmark_urls(monkeypatch: pytest.MonkeyPatch, *urls: str, sha256: str | None = None) -> None:
    """The zoo's landmark model entry with other URLs (and SHA-256)."""
    zoo_sources(monkeypatch, alignment.LANDMARK_MODEL, *urls, sha256=sha256)


@pytest.fixture
def predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real (tiny) dlib predictor as the landmark model."""
    path = write_landmark_standin(tmp_path / "sp.dat")
    monkeypatch.setattr(alignment, "landmark_model_path", lambda: path)
    return path


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


def test_ffhq_quad_equals_the_ffhq_dataset_formula() -> None:
    """The FFHQ dataset's crop (its alignment script, written out here) for face-like landmarks."""
    rng = np.random.default_rng(3)
    lm = landmarks((410, 520), (590, 505), (440, 700), (575, 690), angle=0.2, origin=(500, 600))
    lm = lm + rng.normal(0, 4, lm.shape)
    eye_left, eye_right = np.mean(lm[36:42], axis=0), np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[48:60][0] + lm[48:60][6]) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad, qsize = ffhq_quad(lm)
    np.testing.assert_allclose(quad, np.stack([c - x - y, c - x + y, c + x + y, c + x - y]), rtol=0, atol=1e-9)
    assert qsize == pytest.approx(np.hypot(*x) * 2, abs=1e-9)


def test_detect_landmarks_runs_dlibs_predictor_on_the_largest_face(predictor: Path, monkeypatch) -> None:
    import dlib

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 120, 3), dtype=np.uint8))
    small, big = dlib.rectangle(2, 2, 20, 20), dlib.rectangle(30, 10, 90, 70)
    seen = []
    monkeypatch.setattr(alignment, "face_detector", lambda: lambda pixels, upsample: seen.append(upsample) or [small, big])
    lm = detect_landmarks(img)
    expected = dlib.shape_predictor(str(predictor))(np.asarray(img), big)
    assert lm.shape == (68, 2) and seen == [1]
    np.testing.assert_array_equal(lm, [[p.x, p.y] for p in expected.parts()])
    assert not np.array_equal(lm, [[p.x, p.y] for p in dlib.shape_predictor(str(predictor))(np.asarray(img), small).parts()])


def test_no_face_and_a_corrupt_model_are_one_line(predictor: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileFormatError) as exc:          # dlib's real detector on a face-less photo
        align_face(Image.new("RGB", (80, 80), (120, 120, 120)), size=32)
    assert "no face found" in str(exc.value) and "--no-align" in str(exc.value) and "\n" not in str(exc.value)
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"not a dlib model")
    monkeypatch.setattr(alignment, "landmark_model_path", lambda: junk)
    with pytest.raises(FileFormatError, match="is not a dlib shape predictor"):
        align_face(Image.new("RGB", (80, 80)), size=32)


def test_without_dlib_is_one_line(predictor: Path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dlib", None)   # makes `import dlib` fail
    with pytest.raises(ConfigError) as exc:
        align_face(Image.new("RGB", (80, 80)), size=32)
    assert "pip install dlib-bin" in str(exc.value) and "--no-align" in str(exc.value) and "\n" not in str(exc.value)


def test_landmark_model_offline_is_one_line(monkeypatch, cache_home: Path) -> None:
    landmark_urls(monkeypatch, closed_url())
    with pytest.raises(DownloadError) as exc:
        align_face(Image.new("RGB", (80, 80)), size=32)
    message = str(exc.value)
    assert "\n" not in message and "landmark model" in message and "--no-align" in message
    assert not zoo.resolve(alignment.LANDMARK_MODEL).path().exists()


@pytest.mark.parametrize("transport", ["http", "hugging-face"])
def test_landmark_model_downloads_bz2_decompresses_and_verifies(hub, monkeypatch, tmp_path: Path, transport) -> None:
    """As dlib and its mirrors publish it: bzip2-compressed; the SHA-256 is the decompressed file's."""
    model = write_landmark_standin(tmp_path / "sp.dat").read_bytes()
    name = "shape_predictor_68_face_landmarks.dat.bz2"
    if transport == "http":
        url = hub.add(f"/files/{name}", bz2.compress(model))
    else:
        hub.add(f"/org/repo/resolve/{REV}/{name}", bz2.compress(model))
        url = f"https://huggingface.co/org/repo/resolve/{REV}/{name}"
    landmark_urls(monkeypatch, url, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(DownloadError, match="checksum mismatch"):
        alignment.landmark_model_path()
    assert not list(zoo.resolve(alignment.LANDMARK_MODEL).path().parent.glob("shape_predictor*"))
    landmark_urls(monkeypatch, url, sha256=hashlib.sha256(model).hexdigest())
    path = alignment.landmark_model_path()
    assert path.read_bytes() == model and path.name == "shape_predictor_68_face_landmarks.dat"
    assert not list(path.parent.glob("*.bz2")) and not list(path.parent.glob(".*"))   # nothing half-done left
    alignment._predictor(str(path))  # dlib reads it


def test_encoder_input_is_the_research_bilinear_resize(tmp_path: Path) -> None:
    """An aligned 1024 px photo reaches the encoder as torchvision's Resize((256, 256)) of the PIL
    image makes it: PIL's (antialiased) bilinear filter, not Lanczos and not a plain tensor resize."""
    pixels = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)).save(tmp_path / "aligned.png")
    img = Image.open(tmp_path / "aligned.png")
    expected = np.asarray(img.resize((256, 256), Image.Resampling.BILINEAR), dtype=np.float32) / 127.5 - 1
    got = encoder_input(tmp_path / "aligned.png")
    assert got.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    lanczos = np.asarray(img.resize((256, 256), Image.Resampling.LANCZOS), dtype=np.float32) / 127.5 - 1
    assert np.abs(lanczos - expected).max() > 2 / 255
    plain = torch.nn.functional.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), size=256,
                                            mode="bilinear", antialias=False)
    assert (plain[0].permute(1, 2, 0).numpy() / 127.5 - 1 - expected).__abs__().max() > 2 / 255


@pytest.fixture
def face_encoder(tmp_path: Path) -> Path:
    """A ReStyle stand-in whose opts say it was trained on FFHQ faces (as the released ones)."""
    return write_restyle_standin(tmp_path / "restyle_psp_ffhq_encode.pt", load_generator(TINY_G))[0]


def test_face_encoders_align_photos_by_default(tmp_path: Path, capsys, face_encoder: Path, cache_home: Path,
                                               monkeypatch) -> None:
    photo = write_photo(tmp_path / "me.png", 0, (120, 120))
    lm = landmarks((40, 50), (60, 50), (42, 70), (58, 70))
    monkeypatch.setattr(alignment, "detect_landmarks", lambda img: lm)
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out", str(tmp_path / "a"),
                           "--iterations", "2", *CPU)
    assert code == 0, err
    aligned = list((cache_home / "aligned").glob("*.png"))
    assert len(aligned) == 1 and Image.open(aligned[0]).size == (32, 32)
    np.testing.assert_array_equal(np.asarray(Image.open(aligned[0])),
                                  np.asarray(align_with_landmarks(Image.open(photo), lm, 32)))
    written = Latent.load(tmp_path / "a" / "me-latent.safetensors")
    E = load_encoder(face_encoder)
    torch.testing.assert_close(written.latent, E.invert(encoder_input(aligned[0]), 2), rtol=1e-4, atol=1e-4)
    assert written.settings["align"] is True
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out", str(tmp_path / "n"),
                           "--iterations", "2", "--no-align", *CPU)
    assert code == 0, err
    plain = Latent.load(tmp_path / "n" / "me-latent.safetensors")
    assert plain.settings["align"] is False
    torch.testing.assert_close(plain.latent, E.invert(encoder_input(photo), 2), rtol=1e-4, atol=1e-4)


def test_face_encoder_offline_fails_in_one_line(tmp_path: Path, capsys, face_encoder: Path, monkeypatch) -> None:
    landmark_urls(monkeypatch, closed_url())
    photo = write_photo(tmp_path / "me.png", 0, (64, 64))
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out", str(out), *CPU)
    assert code == 1 and err.count("\n") == 1 and "landmark model" in err and "--no-align" in err, err
    assert not out.exists()


def test_photo_without_a_face_warns_and_continues(tmp_path: Path, capsys, face_encoder: Path, predictor: Path) -> None:
    """dlib's real detector finds no face in noise: in the automatic mode the photo is used as it is."""
    photo = write_photo(tmp_path / "wall.png", 0, (64, 64))
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out", str(tmp_path / "o"),
                           "--iterations", "1", *CPU)
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("warning: no face found in wall.png")
    code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out", str(tmp_path / "s"),
                           "--align", *CPU)
    assert code == 1 and "no face found" in err and err.count("\n") == 1


def test_first_alignment_fetches_the_landmark_model_once(tmp_path: Path, capsys, face_encoder: Path, hub,
                                                         monkeypatch) -> None:
    """The zoo's own first URL (the pinned Hugging Face .bz2) served locally with a stand-in: the
    first face-encoder run downloads, decompresses and verifies it; later runs use the cache."""
    model = write_landmark_standin(tmp_path / "sp.dat").read_bytes()
    first = zoo.resolve(alignment.LANDMARK_MODEL).urls[0]
    assert first.startswith("https://huggingface.co/") and first.endswith(".dat.bz2")
    served = first.removeprefix("https://huggingface.co")
    hub.add(served, bz2.compress(model))
    zoo_sources(monkeypatch, alignment.LANDMARK_MODEL, sha256=hashlib.sha256(model).hexdigest())
    photo = write_photo(tmp_path / "wall.png", 0, (64, 64))
    for run in ("first", "second"):
        code, _, err = run_cli(capsys, "invert", str(photo), "--encoder", str(face_encoder), "--out",
                               str(tmp_path / run), "--iterations", "1", *CPU)
        assert code == 0 and err.startswith("warning: no face found in wall.png"), err
    assert hub.hits.count(f"GET {served}") == 1
    assert zoo.resolve(alignment.LANDMARK_MODEL).path().read_bytes() == model
