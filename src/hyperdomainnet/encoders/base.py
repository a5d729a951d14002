"""What every photo encoder is: a network, the generator it inverts into, its W+ start code.

Photos enter the encoders at ``INPUT_SIZE`` px in [−1, 1]; ``invert`` returns W+ codes
(B, n_latent, D) for the encoder's ``generator``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..stylegan2.generator import Generator

INPUT_SIZE = 256
DEFAULT_ITERATIONS = 5
#: ``opts["dataset_type"]`` words of encoders trained on aligned faces (ffhq_encode, celebs_*)
FACE_DATASETS = ("ffhq", "celeb")


def resize_input(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Photos (B, 3, H, W) → (B, 3, size, size): antialiased bilinear resize when needed."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class PhotoEncoder(ABC):
    """An encoder network, the generator it was trained against (``generator``), its W+ start code
    ``latent_avg`` (n_latent, D) and the checkpoint's training options ``opts``."""

    #: whether ``invert`` refines its answer over several passes (ReStyle) or needs one (e4e)
    iterative: ClassVar[bool] = False

    def __init__(self, net: nn.Module, generator: Generator, latent_avg: torch.Tensor, name: str = "encoder",
                 opts: dict[str, Any] | None = None) -> None:
        self.net = net
        self.generator = generator
        self.latent_avg = latent_avg
        self.name = name
        self.opts = dict(opts or {})
        self._inference: tuple[tuple[tuple[int, int], ...], Any] | None = None

    @property
    def kind(self) -> str:
        """``psp`` or ``e4e`` (ReStyle), or ``encoder4editing`` (single pass)."""
        return str(self.net.arch.kind)

    @property
    def faces(self) -> bool:
        """Whether the encoder was trained on FFHQ-aligned faces (its photos are aligned first)."""
        dataset = str(self.opts.get("dataset_type", "")).lower()
        return any(word in dataset for word in FACE_DATASETS)

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    def to(self, device: str | torch.device) -> PhotoEncoder:
        """Move to ``device``; the network's activations are channels-last (NHWC), which oneDNN and
        cuDNN convolutions run fastest (1.5× on a 2-core CPU)."""
        self.net.to(device, memory_format=torch.channels_last)
        self.generator.to(device)
        self.latent_avg = self.latent_avg.to(device)
        self._inference = None
        return self

    def fast_net(self) -> Any:
        """``net`` rewritten for inference (same function up to float rounding; eval mode only)."""
        return self.net

    def inference_net(self) -> Any:
        """:meth:`fast_net`, rebuilt whenever a weight or statistic of ``net`` has changed; ``net``
        itself in training mode."""
        if self.net.training:
            return self.net
        key = tuple((t.data_ptr(), t._version) for t in self.net.state_dict(keep_vars=True).values())
        if self._inference is None or self._inference[0] != key:
            self._inference = (key, self.fast_net())
        return self._inference[1]

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, 3, H, W) as float32 on the encoder's device, resized to ``INPUT_SIZE``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        return resize_input(images.to(self.device, torch.float32))

    @abstractmethod
    def invert(self, images: torch.Tensor, iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:
        """Photos (B, 3, H, W) in [−1, 1] → W+ codes (B, n_latent, D)."""


__all__ = ["DEFAULT_ITERATIONS", "FACE_DATASETS", "INPUT_SIZE", "PhotoEncoder", "resize_input"]
