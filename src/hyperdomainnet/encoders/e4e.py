"""encoder4editing's e4e as a photo encoder: W+ = latent_avg + net(x), one pass."""
from __future__ import annotations

import torch

from .base import PhotoEncoder
from .inference import E4EInferenceNet


class E4EEncoder(PhotoEncoder):
    """encoder4editing's e4e (an :class:`~.encoder4editing.Encoder4EditingNet`) and its generator."""

    def fast_net(self) -> E4EInferenceNet:
        return E4EInferenceNet(self.net)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, iterations: int = 1) -> torch.Tensor:  # noqa: ARG002
        """Photos (B, 3, H, W) in [−1, 1] → W+ codes (B, n_latent, D); a single pass, so
        ``iterations`` (an option of the iterative encoders) does not apply."""
        x = self.check_images(images).contiguous(memory_format=torch.channels_last)
        return self.latent_avg[None] + self.inference_net()(x)


__all__ = ["E4EEncoder"]
