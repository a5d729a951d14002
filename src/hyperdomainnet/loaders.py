"""``load_generator``: one entry point for generator files, ``random:`` specs and zoo names.

Files and random specs are read by the generator package (:mod:`hyperdomainnet.stylegan2.loading`);
any other spec is a zoo name or alias (``ffhq``, ``stylegan2-car-config-f``, …), downloaded once
into the cache and recorded in ``G.identity`` under its canonical zoo name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, HDNError
from .stylegan2.generator import Generator
from .stylegan2.loading import RANDOM_PREFIX, load_local_generator


def resolve_zoo_spec(spec: str) -> Any:
    """The zoo entry a non-file, non-random spec names, or a one-line error listing the options."""
    from . import zoo

    try:
        return zoo.resolve(spec)
    except HDNError as exc:
        raise ConfigError(f"generator {spec!r} is not an existing file nor a random:<size> spec, "
                          f"and {exc}") from None


def load_generator(spec: str | os.PathLike[str], device: str | torch.device = "cpu") -> Generator:
    """Load a frozen eval-mode generator from a file, a ``random:`` spec or a zoo name."""
    spec_str = str(spec)
    if spec_str.startswith(RANDOM_PREFIX) or Path(spec_str).expanduser().exists():
        return load_local_generator(spec_str, device)
    from . import zoo

    entry = resolve_zoo_spec(spec_str)
    return load_local_generator(zoo.local_path(entry.name, "generator"), device, name=entry.name)


def artefact_path(spec: str | os.PathLike[str], kind: str) -> Path:
    """The file ``spec`` names: itself when it exists or looks like a path (so a missing file keeps
    its own error), else the zoo's ``kind`` entry of that name, fetched once (``hdn models``)."""
    path = Path(spec).expanduser()
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    from . import zoo

    return zoo.local_path(str(spec), kind)
