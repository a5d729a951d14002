"""LPIPS perceptual distance (Zhang et al. 2018), loaded once per (net, device, backbone).

The learned linear layers (v0.1) ship inside the ``lpips`` package; the backbone (VGG16 /
AlexNet / SqueezeNet) comes from torchvision's ImageNet weights, downloaded on first use into
torch's hub cache. ``random_backbone=True`` builds a randomly initialised backbone (seed 0)
instead: offline and deterministic, for tests — its distances are not perceptual.
Inputs are images in [−1, 1]; ``model(a, b)`` returns (B, 1, 1, 1) distances.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from .errors import ConfigError, DownloadError, FileFormatError, first_line
from .torchfile import read_torch_file

NETS: tuple[str, ...] = ("vgg", "alex", "squeeze")
LPIPS_VERSION = "0.1"
_CACHE: dict[tuple[str, str, bool], torch.nn.Module] = {}

__all__ = ["NETS", "load_lpips"]


def load_lpips(net: str = "vgg", device: str | torch.device = "cpu",
               random_backbone: bool = False) -> torch.nn.Module:
    """A frozen, eval-mode ``lpips.LPIPS`` (v0.1 linear weights); cached per (net, device, backbone).

    Raises :class:`DownloadError` when the pretrained backbone cannot be downloaded (offline).
    """
    if net not in NETS:
        raise ConfigError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")
    key = (net, str(torch.device(device)), bool(random_backbone))
    if key not in _CACHE:
        _CACHE[key] = _build(net, random_backbone).requires_grad_(False).eval().to(device)
    return _CACHE[key]


def _build(net: str, random_backbone: bool) -> torch.nn.Module:
    import lpips

    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation
            torch.manual_seed(0)
            model = lpips.LPIPS(pretrained=False, net=net, version=LPIPS_VERSION,
                                pnet_rand=random_backbone, verbose=False)
    except (OSError, RuntimeError) as exc:
        raise DownloadError(f"could not get torchvision's pretrained {net} weights for LPIPS ({first_line(exc)}); "
                            f"connect to the internet once (they are cached in {torch.hub.get_dir()}), or "
                            "pass --lpips-random-backbone to run offline with a random backbone "
                            "(its distances are not perceptual: for trials only)") from None
    weights = Path(lpips.__file__).parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"
    result = model.load_state_dict(read_torch_file(weights, "LPIPS weights file"), strict=False)
    if result.unexpected_keys or any(re.fullmatch(r"lin\d+", k.split(".")[0]) for k in result.missing_keys):
        raise FileFormatError(f"{weights} does not match lpips.LPIPS(net={net!r}); reinstall the lpips package")
    return model
