"""W+ latents of inverted photos as files (``Latent.save`` / ``Latent.load``).

File layout (see :mod:`hyperdomainnet.fileformat`, format ``hyperdomainnet.latent``, version 1):
one tensor ``latent`` of shape (B, n_latent, D), float32, and metadata ``image`` (the photo's
file name), ``image_sha256`` (of its bytes), ``generator`` (identity of the generator the code
renders with: name, sha256, arch; null when unknown), ``settings`` (how it was inverted) and
``losses`` (final loss values by name; absent in the inversion cache, whose files also store the
loss history as a tensor ``losses``). ``hdn invert`` writes one file per photo; render one with
``G.synthesis(Latent.load(path).latent.to(device), noise_mode="const")``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import fileformat
from .errors import FileFormatError

FORMAT = "hyperdomainnet.latent"
FORMAT_VERSION = 1
LATENT_KEY = "latent"
REQUIRED_METADATA: tuple[str, ...] = ("image", "image_sha256", "generator", "settings")
WHAT = "latent file"

__all__ = ["FORMAT", "FORMAT_VERSION", "Latent"]


@dataclass
class Latent:
    """W+ code(s) ``latent`` (B, n_latent, D) of the photo ``image`` and how they were obtained."""

    latent: torch.Tensor
    image: str
    image_sha256: str
    generator: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this latent atomically as a latent file; returns ``path``."""
        meta = {"image": self.image, "image_sha256": self.image_sha256, "generator": self.generator,
                "settings": self.settings, "losses": self.losses}
        return fileformat.save(path, {LATENT_KEY: self.latent.detach().float()}, meta, file_format=FORMAT,
                               version=FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Latent:
        """Read a latent file, checking its format marker, metadata, shape and finiteness."""
        tensors, meta = fileformat.load(path, file_format=FORMAT, max_version=FORMAT_VERSION, what=WHAT,
                                        required=REQUIRED_METADATA)
        latent = tensors.get(LATENT_KEY)
        if latent is None or latent.ndim != 3:
            found = "none" if latent is None else f"shape {tuple(latent.shape)}"
            raise FileFormatError(f"{path} is a corrupt {WHAT}: expected a tensor {LATENT_KEY!r} of shape "
                                  f"(B, n_latent, D), found {found}; invert the photo again")
        generator, settings, losses = meta["generator"], meta["settings"], meta.get("losses", {})
        if (not isinstance(meta["image"], str) or not isinstance(meta["image_sha256"], str)
                or not isinstance(generator, (dict, type(None))) or not isinstance(settings, dict)
                or not isinstance(losses, dict)):
            raise FileFormatError(f"{path} has corrupt metadata (image, image_sha256, generator, settings or "
                                  "losses of the wrong type); invert the photo again")
        return cls(latent, meta["image"], meta["image_sha256"], generator, settings, losses)
