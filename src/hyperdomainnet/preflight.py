"""Before a job starts: the files it would download that are not cached here.

When none of a missing file's sources can be reached — one quick connection probe per host
instead of a download library's half minute of retries, or ``HF_HUB_OFFLINE`` set for Hugging Face
— every such file is listed at once, one line each with where to get it and where it goes, and the
random-weight models (which need no download) are suggested. Nothing is downloaded here.
"""
from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import DownloadError

PROBE_TIMEOUT_S = 3.0
HUGGING_FACE = "huggingface.co"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
RANDOM_HINT = ("or run offline on random-weight models, which need no download: --generator random:256 "
               "--clip random:tiny (the README's offline quick start; `hdn selftest` checks them)")


@dataclass(frozen=True)
class Needed:
    """A file a job would download: ``what`` it is, the ``urls`` it comes from, ``how`` to supply
    it by hand (where to get it and where to put it)."""

    what: str
    urls: tuple[str, ...]
    how: str


def generator_download(spec: str) -> Needed | None:
    """The zoo generator ``spec`` names when it is not in the cache (None for files, ``random:``
    specs and names the zoo does not know: loading reports those)."""
    from . import zoo
    from .errors import ConfigError
    from .stylegan2.loading import RANDOM_PREFIX

    if spec.startswith(RANDOM_PREFIX) or Path(spec).expanduser().exists():
        return None
    try:
        entry = zoo.resolve(spec)
    except ConfigError:
        return None
    if zoo.status(entry) != "not downloaded" or entry.member is not None:
        return None
    return Needed(f"generator {entry.name}", entry.urls,
                  f"download {entry.urls[0]} and place it at {entry.path()}")


def clip_downloads(ensemble: str) -> list[Needed]:
    """The pretrained CLIP weights of an ensemble spec (``NAME:WEIGHT,…`` or one name) not cached here."""
    from .clip.encoders import parse_ensemble_spec, uncached_weights

    needed = []
    for name, _ in parse_ensemble_spec(ensemble):
        how = uncached_weights(name)
        if how is not None:
            needed.append(Needed(f"CLIP {name}", tuple(re.findall(r"https?://\S+", how)), how))
    return needed


def lpips_download(net: str = "vgg") -> Needed | None:
    """torchvision's ImageNet backbone of LPIPS ``net`` when it is not in torch's hub cache."""
    import torch
    from torchvision import models

    weights = {"vgg": models.VGG16_Weights, "alex": models.AlexNet_Weights,
               "squeeze": models.SqueezeNet1_1_Weights}[net].IMAGENET1K_V1
    destination = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if destination.is_file():
        return None
    return Needed(f"LPIPS {net} backbone", (weights.url,), f"download {weights.url} and place it at {destination} "
                  "(or pass --lpips-random-backbone: a random backbone, for trials only)")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _probe_address(url: str) -> tuple[str, int]:
    """The host and port a connection to ``url`` goes to first: the proxy when one is set, the
    ``HF_ENDPOINT`` mirror for Hugging Face, else the URL's own host."""
    proxy = next((os.environ[v] for v in PROXY_VARIABLES if os.environ.get(v)), None)
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return parts.hostname or "", parts.port or 80
    parts = urlsplit(url)
    if parts.hostname == HUGGING_FACE and os.environ.get("HF_ENDPOINT"):
        parts = urlsplit(os.environ["HF_ENDPOINT"])
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


@cache
def _reachable(host: str, port: int) -> bool:
    """One TCP connection attempt within ``PROBE_TIMEOUT_S``, its name lookup included (which the
    socket timeout does not bound: the attempt runs in a thread left behind if it hangs)."""
    answer: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=attempt, name=f"probe {host}", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return bool(answer and answer[0])


def _obtainable(needed: Needed) -> bool:
    for url in needed.urls:
        if urlsplit(url).hostname == HUGGING_FACE and _hub_offline():
            continue
        if _reachable(*_probe_address(url)):
            return True
    return False


def check_downloads(needed: list[Needed]) -> None:
    """Raise one DownloadError listing every file of ``needed`` that cannot be downloaded now."""
    stuck = [n for n in needed if not _obtainable(n)]
    if not stuck:
        return
    why = "HF_HUB_OFFLINE is set or the network is unreachable" if _hub_offline() else "no connection"
    lines = [f"{len(stuck)} file(s) this command needs are not cached here and cannot be downloaded ({why}):",
             *(f"  {n.what}: {n.how}" for n in stuck), f"  {RANDOM_HINT}"]
    raise DownloadError("\n".join(lines))


def check_training_downloads(cfg: Any) -> None:
    """The pre-flight of a training run: its generator, every CLIP model it loads and, for reference
    images (their inversion and reconstruction terms), LPIPS's backbone."""
    needed = [generator_download(str(cfg.generator))] if getattr(cfg, "generator", None) else []
    if (getattr(cfg, "images", None) or getattr(cfg, "image", None)) and not cfg.lpips_random_backbone:
        needed.append(lpips_download("vgg"))
    for ensemble in (getattr(cfg, "clip", None), getattr(cfg, "mapper_clip", None)):
        needed += clip_downloads(ensemble) if ensemble else []
    check_downloads(list({n.what: n for n in needed if n is not None}.values()))
