"""Generators from local files and ``random:`` specs (the generator package stands alone: zoo
names are resolved one level up, by :func:`hyperdomainnet.loaders.load_generator`).

Spec forms:

* a path to a rosinality ``.pt`` (zip or PyTorch's legacy format) or an NVIDIA
  stylegan2-ada-pytorch / stylegan3 ``.pkl``;
* ``random:<size>[:key=value…]`` — config-f architecture with random weights, deterministic
  for a given spec (keys: ``channel_max``, ``channel_multiplier``, ``n_mlp``, ``style_dim``,
  ``conv_clamp``, ``seed``; seed 0 unless given);
* ``random:sg3-<t|r>:<size>[:key=value…]`` — a StyleGAN3 generator with random weights
  (``hyperdomainnet.stylegan3.spec``).

The loaded generator is frozen (``requires_grad=False``), in eval mode, and carries
``G.identity``: its canonical name, the source file's SHA-256 (None for random specs; remembered
per file size and mtime, so an unchanged checkpoint is hashed once) and the architecture, so that
domain files can name the generator they were trained on.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, FileFormatError
from ..filekind import looks_like
from ..hashing import file_identity_sha256
from .formats.rosinality import GeneratorCheckpoint, read_rosinality
from ..stylegan3.generator import arch_from_dict, build_generator
from ..stylegan3.spec import is_stylegan3_spec, random_stylegan3
from .generator import Generator, GeneratorArch

RANDOM_PREFIX = "random:"
RANDOM_KEYS: dict[str, type] = {"channel_max": int, "channel_multiplier": int, "n_mlp": int,
                                "style_dim": int, "conv_clamp": float, "seed": int}
PICKLE_MAGIC = b"\x80"
ZIP_MAGIC = b"PK"
#: PyTorch's legacy (non-zip) format starts with its pickled magic number.
LEGACY_TORCH_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def parse_random_spec(spec: str) -> tuple[GeneratorArch, int]:
    """``random:64:channel_max=32:n_mlp=2`` → (architecture, seed)."""
    parts = spec[len(RANDOM_PREFIX):].split(":")
    try:
        size = int(parts[0])
        options: dict[str, Any] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key not in RANDOM_KEYS or not value:
                raise KeyError(key)
            options[key] = RANDOM_KEYS[key](value)
        seed = options.pop("seed", 0)
        return GeneratorArch(size=size, **options), seed
    except KeyError as exc:
        raise ConfigError(f"unknown option {exc.args[0]!r} in {spec!r}; use random:<size>[:key=value…] "
                          f"with keys {', '.join(RANDOM_KEYS)}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid generator spec {spec!r} ({exc}); e.g. random:64:channel_max=32:n_mlp=2") from None


def canonical_random_spec(arch: GeneratorArch, seed: int) -> str:
    """The canonical spelling of a random spec (options in a fixed order, defaults omitted)."""
    default = GeneratorArch(size=arch.size)
    parts = [f"random:{arch.size}"]
    for key in RANDOM_KEYS:
        if key == "seed":
            if seed:
                parts.append(f"seed={seed}")
        elif getattr(arch, key) != getattr(default, key):
            parts.append(f"{key}={getattr(arch, key)}")
    return ":".join(parts)


def random_generator(spec: str) -> Generator:
    """A generator with random weights drawn deterministically from the spec's seed."""
    if is_stylegan3_spec(spec):
        return random_stylegan3(spec)
    arch, seed = parse_random_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = build_generator(arch)
    G.identity = {"name": canonical_random_spec(arch, seed), "sha256": None, "arch": arch.to_dict()}
    return G


def read_checkpoint(path: Path) -> GeneratorCheckpoint:
    """Read a generator file of either supported format, chosen by its first bytes."""
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory; pass a generator checkpoint file (.pt or .pkl)")
    with open(path, "rb") as fh:
        head = fh.read(len(LEGACY_TORCH_MAGIC))
    if not head:
        raise FileFormatError(f"{path} is empty; download the checkpoint again")
    if head.startswith(ZIP_MAGIC) or head == LEGACY_TORCH_MAGIC:
        return read_rosinality(path)
    if head.startswith(PICKLE_MAGIC):
        from .formats.nvidia_pkl import read_nvidia_pickle

        ckpt = read_nvidia_pickle(path)
        return GeneratorCheckpoint(ckpt.state_dict, ckpt.latent_avg, arch_from_dict(ckpt.arch))
    if path.suffix == ".safetensors":
        raise FileFormatError(f"{path} is a safetensors file (a domain or hypernetwork file?), not a generator; "
                              "pass it with --domain / --hypernet and give the generator separately")
    raise FileFormatError(f"{path} is {looks_like(path)}, not a PyTorch checkpoint (.pt) or pickle (.pkl); "
                          "expected a StyleGAN2 generator checkpoint")


def generator_from_checkpoint(ckpt: GeneratorCheckpoint, source: str) -> Generator:
    """Instantiate and fill a generator; shape mismatches become one-line errors."""
    G = build_generator(ckpt.arch)
    state = dict(ckpt.state_dict)
    state["latent_avg"] = (ckpt.latent_avg if ckpt.latent_avg is not None
                           else torch.full((ckpt.arch.style_dim,), float("nan")))
    expected = G.state_dict()
    wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    result = G.load_state_dict({k: v for k, v in state.items() if k not in wrong}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith((".kernel",)) and k not in wrong]
    if missing or result.unexpected_keys or wrong:
        raise FileFormatError(f"{source} does not match a {G.family} generator of size {ckpt.arch.size} "
                              f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}, "
                              f"wrong shape {wrong[:3]})")
    return G


def load_local_generator(spec: str | os.PathLike[str], device: str | torch.device = "cpu",
                         name: str | None = None) -> Generator:
    """A frozen eval-mode generator from a ``random:`` spec or an existing file (see module
    docstring); ``name`` is recorded in ``G.identity`` instead of the file name."""
    spec_str = str(spec)
    if spec_str.startswith(RANDOM_PREFIX):
        G = random_generator(spec_str)
    else:
        path = Path(spec_str).expanduser()
        if not path.exists():
            raise FileFormatError(f"generator file {path} does not exist")
        ckpt = read_checkpoint(path)
        G = generator_from_checkpoint(ckpt, str(path))
        G.identity = {"name": name or path.name, "sha256": file_identity_sha256(path), "arch": ckpt.arch.to_dict()}
    G.mean_latent()
    return G.requires_grad_(False).eval().to(device)
