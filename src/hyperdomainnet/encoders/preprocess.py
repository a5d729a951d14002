"""Photo files as the encoders read them, as the research code feeds its FFHQ encoders.

The photo (already FFHQ-aligned, or fitted to a square) is resized to 256×256 by torchvision's
``Resize`` with bilinear interpolation. On a PIL image torchvision runs PIL's bilinear filter,
which is antialiased (its support widens with the downscale factor) whatever torchvision's
``antialias`` setting; then ``ToTensor`` and ``Normalize(0.5, 0.5)``: x/127.5 − 1.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..images import Fit, fit_square, open_image, to_tensor
from .base import INPUT_SIZE


def encoder_input(path: str | Path, fit: Fit = "crop", size: int = INPUT_SIZE) -> torch.Tensor:
    """A photo file → (1, 3, size, size) in [−1, 1]: square by ``fit``, then bilinear ``Resize``."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    return to_tensor(resize(fit_square(open_image(path), fit), [size, size], InterpolationMode.BILINEAR))


__all__ = ["encoder_input"]
