"""FFHQ face alignment of photos, as the FFHQ dataset was aligned and the research code aligns
photos before its FFHQ encoders.

1. Faces: dlib's frontal face detector (HOG features, the image upsampled once); the largest
   face is kept (the research code keeps the last one dlib lists: the same for a single face).
2. Its 68 landmarks (iBUG order) by dlib's shape predictor, the zoo entry ``dlib-landmarks-68``
   (downloaded, decompressed and verified on first use).
3. The FFHQ crop quad from the eyes and mouth corners (:func:`ffhq_quad`), then the FFHQ
   recipe: shrink, crop, reflect-pad, warp the quad to a 4096 px square and downscale
   (:func:`align_with_landmarks`).

The photo is read with its EXIF orientation applied (the research code reads the stored pixels).
The reflect-padding's blur is PIL's Gaussian blur (the FFHQ script uses scipy's), which touches
only the part of the output outside the photo. Every failure (no landmark model offline, no
face, a corrupt model file) is one line.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from .errors import ConfigError, DownloadError, FileFormatError
from .images import open_image, to_tensor

LANDMARK_MODEL = "dlib-landmarks-68"
DETECTOR_UPSAMPLE = 1   # dlib detector pyramid upsamplings, as the research code runs it
NO_ALIGN_HINT = "or pass --no-align to use photos as they are"

__all__ = ["LANDMARK_MODEL", "ffhq_quad", "align_with_landmarks", "landmark_model_path", "detect_landmarks",
           "align_face"]


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop for 68 iBUG landmarks: (quad (4, 2) = top-left, bottom-left, bottom-right,
    top-right corners in image coordinates; its side length).

    e = mean right eye − mean left eye, m = mouth-corner midpoint − eye midpoint;
    x = (e − rot90(m)) normalised × max(2|e|, 1.8|m|), y = rot90(x) (pointing down the face),
    centre c = eye midpoint + 0.1 m; quad = c ∓ x ∓ y; side = 2|x|.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 (x, y) landmarks in the iBUG/dlib order, got shape {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def align_with_landmarks(img: Image.Image, landmarks: np.ndarray, size: int = 1024,
                         transform_size: int = 4096, enable_padding: bool = True) -> Image.Image:
    """Crop, pad and warp ``img`` to the FFHQ-aligned ``size``×``size`` face given its landmarks.

    The FFHQ recipe: shrink when the face is over twice the output size, crop to the quad plus a
    10 % border, reflect-pad (blurred, fading to the median colour) where the quad leaves the
    image, then map the quad onto a ``transform_size`` square and downscale with Lanczos.
    """
    quad, qsize = ffhq_quad(landmarks)
    img = img.convert("RGB")
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))),
                         Image.Resampling.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        img, quad = _pad_reflect(img, quad, pad, qsize)
    out_side = max(transform_size, size)
    img = img.transform((out_side, out_side), Image.Transform.QUAD, tuple((quad + 0.5).flatten()),
                        Image.Resampling.BILINEAR)
    if size < out_side:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _pad_reflect(img: Image.Image, quad: np.ndarray, pad: tuple[int, int, int, int],
                 qsize: float) -> tuple[Image.Image, np.ndarray]:
    """FFHQ padding: reflect by ≥ 0.3·qsize, blend towards a blurred copy and the median colour
    with a mask that grows away from the original image edge."""
    left, top, right, bottom = (max(p, int(np.rint(qsize * 0.3))) for p in pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = arr.shape
    yy, xx = np.ogrid[:h, :w]
    mask = np.maximum(1.0 - np.minimum(xx.astype(np.float32) / left, (w - 1 - xx).astype(np.float32) / right),
                      1.0 - np.minimum(yy.astype(np.float32) / top, (h - 1 - yy).astype(np.float32) / bottom))
    mask = mask[..., None]
    blurred = np.asarray(Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)))
                         .filter(ImageFilter.GaussianBlur(qsize * 0.02)), dtype=np.float32)
    arr += (blurred - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255))), quad + np.array([left, top])


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise ConfigError(f"face alignment needs dlib (pip install dlib-bin, a dependency of hyperdomainnet); "
                          f"reinstall the package, {NO_ALIGN_HINT}") from None
    return dlib


@lru_cache(maxsize=1)
def face_detector() -> Any:
    """dlib's HOG frontal face detector (built into dlib; no file)."""
    return _dlib().get_frontal_face_detector()


@lru_cache(maxsize=2)
def _predictor(path: str) -> Any:
    dlib = _dlib()
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:160]
        raise FileFormatError(f"{path} is not a dlib shape predictor ({first}); delete it to download "
                              "the landmark model again") from None


def landmark_model_path() -> Path:
    """The verified landmark model file, downloaded on first use (the zoo's ``dlib-landmarks-68``)."""
    from . import zoo

    try:
        return zoo.fetch(LANDMARK_MODEL)
    except DownloadError as exc:
        raise DownloadError(f"face alignment needs the landmark model: {exc}; {NO_ALIGN_HINT}") from None


def detect_landmarks(img: Image.Image) -> np.ndarray:
    """68 iBUG landmarks (68, 2) of the largest face dlib finds in ``img``."""
    predictor = _predictor(str(landmark_model_path()))
    pixels = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    faces = list(face_detector()(pixels, DETECTOR_UPSAMPLE))
    if not faces:
        raise FileFormatError(f"no face found in the image; pass a photo with a clearly visible, roughly frontal "
                              f"face, {NO_ALIGN_HINT}")
    face = max(faces, key=lambda box: box.width() * box.height())
    shape = predictor(pixels, face)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def align_face(image: str | Path | Image.Image, size: int = 1024) -> torch.Tensor:
    """FFHQ-align the largest face of a file or ``PIL.Image``: (1, 3, size, size) in [−1, 1]."""
    img = image.convert("RGB") if isinstance(image, Image.Image) else open_image(image)
    return to_tensor(align_with_landmarks(img, detect_landmarks(img), size))
