"""rosinality ``.pt`` checkpoints: ``{"g_ema": state_dict, "latent_avg": tensor, ...}``.

Read by :func:`hyperdomainnet.torchfile.read_torch_file` (``weights_only``; zip or legacy format,
which older conversions use; rosinality's ``argparse.Namespace`` of arguments allowed). The file does not
record the architecture: size, mapping depth, style dimension and channel multiplier/cap are
inferred from key names and tensor shapes. Files written here add an ``hdn_arch`` entry (ignored by
rosinality's code) so that settings the shapes cannot show (``conv_clamp``, ``lr_mlp``) survive a
round trip.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...atomic import atomic_path
from ...errors import ConfigError, FileFormatError
from ...torchfile import read_torch_file
from ..generator import Generator, GeneratorArch

REQUIRED_KEYS = ("style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight")


@dataclass
class GeneratorCheckpoint:
    """A generator's weights in rosinality layout, its mean latent (if stored) and architecture."""

    state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    arch: GeneratorArch


def describe(obj: Any) -> str:
    """A short description of what a loaded object is, for error messages."""
    if isinstance(obj, dict):
        keys = list(obj)[:6]
        more = ", …" if len(obj) > 6 else ""
        return f"a dict with keys {', '.join(map(str, keys))}{more}"
    return f"a {type(obj).__name__}"


def extract_state(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, dict | None]:
    """Pick the generator weights out of a loaded checkpoint, or raise naming what was found."""
    if isinstance(obj, dict) and isinstance(obj.get("g_ema"), dict):
        return obj["g_ema"], obj.get("latent_avg"), obj.get("hdn_arch")
    if isinstance(obj, dict) and all(k in obj for k in REQUIRED_KEYS):
        return obj, None, None
    raise FileFormatError(f"{path} is {describe(obj)}, not a StyleGAN2 generator; expected a rosinality "
                          "checkpoint with a 'g_ema' entry, an NVIDIA .pkl, or a zoo name")


def infer_arch(state: dict[str, torch.Tensor], source: str = "state dict") -> GeneratorArch:
    """Architecture from key names and shapes (size from the toRGB count, channels per resolution)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise FileFormatError(f"{source} lacks generator keys {', '.join(missing)}; it is not a StyleGAN2 generator")
    n_mlp = len({int(m.group(1)) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})
    style_dim = state["style.1.weight"].shape[1]
    n_rgb = len({int(m.group(1)) for k in state if (m := re.fullmatch(r"to_rgbs\.(\d+)\.bias", k))})
    size = 2 ** (n_rgb + 2)
    channels = {4: state["conv1.conv.weight"].shape[1]}
    for k in range(n_rgb):
        channels[2 ** (k + 3)] = state[f"convs.{2 * k}.conv.weight"].shape[1]
    channel_max = channels[4]
    for cm in (1, 2, 4):
        arch = GeneratorArch(size, style_dim, n_mlp, cm, channel_max)
        if all(arch.channels(r) == c for r, c in channels.items()):
            return arch
    raise FileFormatError(f"{source} has an unsupported channel layout {channels}; expected StyleGAN2 config-f "
                          "channels (512 up to 32 px, then 2^14·cm/res)")


def read_rosinality(path: str | Path) -> GeneratorCheckpoint:
    """Read a rosinality-layout ``.pt`` safely and infer its architecture."""
    path = Path(path)
    state, latent_avg, stored_arch = extract_state(read_torch_file(path, "StyleGAN2 checkpoint", allowed=(argparse.Namespace,)), path)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    arch = infer_arch(state, str(path))
    if stored_arch:
        declared = GeneratorArch.from_dict(stored_arch)
        if (declared.size, declared.n_mlp, declared.style_dim) != (arch.size, arch.n_mlp, arch.style_dim):
            raise FileFormatError(f"{path} declares architecture {stored_arch} that contradicts its tensors")
        arch = declared
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(-1).float()
    return GeneratorCheckpoint(state, latent_avg, arch)


def write_rosinality(G: Generator, path: str | Path) -> Path:
    """Save ``G`` as a rosinality checkpoint ``{"g_ema", "latent_avg", "hdn_arch"}`` atomically."""
    if getattr(G, "family", "stylegan2") != "stylegan2":
        raise ConfigError(f"a {G.family} generator has no rosinality .pt layout; keep its NVIDIA .pkl")
    state = {k: v.detach().cpu().clone() for k, v in G.state_dict().items() if k != "latent_avg"}
    payload = {"g_ema": state, "latent_avg": G.mean_latent().detach().cpu().clone(),
               "hdn_arch": G.arch.to_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
