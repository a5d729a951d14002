"""ReStyle iterative inversion (Alaluf et al. 2021) of photos into a generator's W+ space.

With x the photo resized to 256×256 in [−1, 1], P = adaptive average pooling to 256×256 and
G(w) the render of W+ code w (no mapping network, the generator's stored constant noise):

    w₁ = w̄ + E(x ‖ P(G(w̄)))            (w̄: the checkpoint's latent_avg)
    wₖ = wₖ₋₁ + E(x ‖ P(G(wₖ₋₁)))        (k = 2 … iterations)

P(G(w̄)) depends on no photo and is rendered once per encoder. The last code's render is not
needed for the loop, so ``invert`` renders ``iterations − 1`` times.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError, FileFormatError, HDNError
from ..stylegan2.generator import Generator
from .checkpoint import read_encoder_checkpoint
from .inference import InferenceNet
from .network import ReStyleNet

INPUT_SIZE = 256
DEFAULT_ITERATIONS = 5


def pool(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Adaptive average pooling to size×size (the research code's ``face_pool``)."""
    return F.adaptive_avg_pool2d(images, (size, size))


def resize_input(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Photos (B, 3, H, W) → (B, 3, size, size): antialiased bilinear resize when needed."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class ReStyleEncoder:
    """A ReStyle encoder and the generator it was trained against (``generator``)."""

    def __init__(self, net: ReStyleNet, generator: Generator, latent_avg: torch.Tensor,
                 name: str = "encoder") -> None:
        self.net = net
        self.generator = generator
        self.latent_avg = latent_avg
        self.name = name
        self._avg_image: torch.Tensor | None = None
        self._inference: tuple[tuple[tuple[int, int], ...], InferenceNet] | None = None

    @classmethod
    def load(cls, spec: str | Path, device: str | torch.device = "cpu") -> ReStyleEncoder:
        """A ReStyle encoder from a checkpoint file or a zoo name (``restyle-psp-ffhq``, …), on
        ``device``; its generator's identity names the zoo entry (or the file) and its SHA-256.
        Released checkpoints are read-only artefacts: there is no ``save``."""
        path = Path(str(spec)).expanduser()
        name = path.name
        if not path.exists():
            from .. import zoo

            try:
                entry = zoo.resolve(str(spec))
            except HDNError:
                raise FileFormatError(f"encoder {spec!r} is neither a file nor a zoo name; pass a ReStyle "
                                      "checkpoint or restyle-psp-ffhq / restyle-e4e-ffhq") from None
            if entry.kind != "encoder":
                raise FileFormatError(f"{entry.name} is a {entry.kind} in the model zoo, not an encoder; pass "
                                      "an encoder name (restyle-psp-ffhq, restyle-e4e-ffhq) or file")
            path, name = zoo.fetch(entry.name), entry.name
        ckpt = read_encoder_checkpoint(path)
        from ..hashing import file_identity_sha256

        ckpt.generator.identity = {"name": name, "sha256": file_identity_sha256(path),
                                   "arch": ckpt.generator.arch.to_dict()}
        return cls(ckpt.net, ckpt.generator, ckpt.latent_avg, name).to(device)

    @property
    def kind(self) -> str:
        """``psp`` or ``e4e``."""
        return self.net.arch.kind

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    def to(self, device: str | torch.device) -> ReStyleEncoder:
        """Move to ``device``; the network's activations are channels-last (NHWC), which oneDNN and
        cuDNN convolutions run fastest (1.5× on a 2-core CPU)."""
        self.net.to(device, memory_format=torch.channels_last)
        self.generator.to(device)
        self.latent_avg = self.latent_avg.to(device)
        self._avg_image = None
        self._inference = None
        return self

    def inference_net(self) -> ReStyleNet | InferenceNet:
        """``net`` as an :class:`InferenceNet` (folded BatchNorms, batched heads; the same function up
        to float rounding), rebuilt whenever a weight or statistic of ``net`` has changed; ``net``
        itself in training mode."""
        if self.net.training:
            return self.net
        key = tuple((t.data_ptr(), t._version) for t in self.net.state_dict(keep_vars=True).values())
        if self._inference is None or self._inference[0] != key:
            self._inference = (key, InferenceNet(self.net))
        return self._inference[1]

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
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if iterations < 1:
            raise ConfigError(f"iterations must be at least 1, got {iterations}")
        x = resize_input(images.to(self.device, torch.float32))
        ws = self.latent_avg[None].expand(x.shape[0], -1, -1)
        previous = self.average_image().expand(x.shape[0], -1, -1, -1)
        net = self.inference_net()
        for k in range(iterations):
            ws = ws + net(torch.cat([x, previous], dim=1).contiguous(memory_format=torch.channels_last))
            if k + 1 < iterations:
                previous = self.render_pooled(ws)
        return ws


def load_encoder(spec: str | Path, device: str | torch.device = "cpu") -> ReStyleEncoder:
    """A ReStyle encoder from a checkpoint file or a zoo name (``restyle-psp-ffhq``, …); same as
    :meth:`ReStyleEncoder.load`."""
    return ReStyleEncoder.load(spec, device)
