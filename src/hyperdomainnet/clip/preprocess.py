"""Differentiable CLIP preprocessing of generator output.

Matches the official code, which applies CLIP's own transforms to tensors:
``Normalize(mean=-1, std=2)`` (maps [-1, 1] to [0, 1]), ``Resize(size, BICUBIC)`` of the short
side, ``CenterCrop(size)`` and ``Normalize(mean, std)``. The official environment (torch 1.7,
torchvision 0.8) had no antialiasing for tensor resizes, so ``antialias`` defaults to False.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def resize_short_side(images: torch.Tensor, size: int, antialias: bool = False) -> torch.Tensor:
    """Bicubic resize so that min(H, W) == size; the long side becomes int(size · long / short)."""
    height, width = images.shape[-2:]
    if height <= width:
        out = (size, int(size * width / height))
    else:
        out = (int(size * height / width), size)
    if out == (height, width):
        return images
    return F.interpolate(images, size=out, mode="bicubic", align_corners=False, antialias=antialias)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Central size×size window, offsets rounded as torchvision's ``CenterCrop`` does."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot centre-crop {height}x{width} images to {size}x{size}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return images[..., top:top + size, left:left + size]


def clip_preprocess(
    images: torch.Tensor,
    size: int,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    antialias: bool = False,
) -> torch.Tensor:
    """(B,3,H,W) in [-1, 1] → (B,3,size,size): x' = (crop(resize((x + 1) / 2)) − mean) / std."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = (images + 1.0) / 2.0
    x = center_crop(resize_short_side(x, size, antialias), size)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
