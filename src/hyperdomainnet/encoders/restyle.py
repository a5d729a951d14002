"""ReStyle iterative inversion (Alaluf et al. 2021) of photos into a generator's W+ space.

With x the photo resized to 256×256 in [−1, 1], P = adaptive average pooling to 256×256 and
G(w) the render of W+ code w (no mapping network, the generator's stored constant noise):

    w₁ = w̄ + E(x ‖ P(G(w̄)))            (w̄: the checkpoint's latent_avg)
    wₖ = wₖ₋₁ + E(x ‖ P(G(wₖ₋₁)))        (k = 2 … iterations)

P(G(w̄)) depends on no photo and is rendered once per encoder. The last code's render is not
needed for the loop, so ``invert`` renders ``iterations − 1`` times.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..stylegan2.generator import Generator
from .base import DEFAULT_ITERATIONS, INPUT_SIZE, PhotoEncoder, resize_input
from .inference import InferenceNet
from .network import ReStyleNet


def pool(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Adaptive average pooling to size×size (the research code's ``face_pool``)."""
    return F.adaptive_avg_pool2d(images, (size, size))


class ReStyleEncoder(PhotoEncoder):
    """A ReStyle encoder and the generator it was trained against (``generator``)."""

    iterative = True

    def __init__(self, net: ReStyleNet, generator: Generator, latent_avg: torch.Tensor,
                 name: str = "encoder", opts: dict | None = None) -> None:
        super().__init__(net, generator, latent_avg, name, opts)
        self._avg_image: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> ReStyleEncoder:
        super().to(device)
        self._avg_image = None
        return self

    def fast_net(self) -> InferenceNet:
        """``net`` as an :class:`InferenceNet` (folded BatchNorms, batched heads)."""
        return InferenceNet(self.net)

    @torch.no_grad()
    def render_pooled(self, ws: torch.Tensor) -> torch.Tensor:
        """P(G(ws)): W+ render with the constant noise, pooled to the encoder's input size."""
        return pool(self.generator.synthesis(ws, noise_mode="const"))

    def average_image(self) -> torch.Tensor:
        """P(G(w̄)) (1, 3, 256, 256), rendered once."""
        if self._avg_image is None:
            self._avg_image = self.render_pooled(self.latent_avg[None])
        return self._avg_image

    @torch.no_grad()
    def invert(self, images: torch.Tensor, iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:
        """Photos (B, 3, H, W) in [−1, 1] → W+ codes (B, n_latent, D) (module docstring)."""
        if iterations < 1:
            raise ConfigError(f"iterations must be at least 1, got {iterations}")
        x = self.check_images(images)
        ws = self.latent_avg[None].expand(x.shape[0], -1, -1)
        previous = self.average_image().expand(x.shape[0], -1, -1, -1)
        net = self.inference_net()
        for k in range(iterations):
            ws = ws + net(torch.cat([x, previous], dim=1).contiguous(memory_format=torch.channels_last))
            if k + 1 < iterations:
                previous = self.render_pooled(ws)
        return ws


__all__ = ["DEFAULT_ITERATIONS", "INPUT_SIZE", "ReStyleEncoder", "pool", "resize_input"]
