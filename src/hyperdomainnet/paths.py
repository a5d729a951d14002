"""Where hyperdomainnet keeps downloaded and cached files.

Everything lives under one root, :func:`home`:

* the environment variable ``HDN_HOME`` when it is set (``~`` is expanded), otherwise
* ``platformdirs.user_cache_dir("hyperdomainnet")`` (e.g. ``~/.cache/hyperdomainnet`` on Linux).

The root is read on every call, so changing ``HDN_HOME`` at run time (tests, notebooks) takes
effect immediately. Subfolders are created on demand.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

ENV_HOME = "HDN_HOME"
APP_NAME = "hyperdomainnet"

MODELS = "models"
LATENTS = "latents"

__all__ = ["ENV_HOME", "home", "subdir", "models_dir", "latents_dir"]


def home() -> Path:
    """The cache root: ``$HDN_HOME`` if set and non-empty, else the platform's user cache dir.

    The folder is not created here; :func:`subdir` creates what it returns.
    """
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)).resolve()


def subdir(name: str, create: bool = True) -> Path:
    """``home() / name``, created (with parents) unless ``create`` is false.

    Raises :class:`ConfigError` when the folder cannot be created (read-only disk, a file in the
    way), naming ``HDN_HOME`` as the way to pick another location.
    """
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"subdir name must be a relative path inside the cache, got {name!r}")
    path = home() / name
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the cache folder {path} ({exc.strerror or exc}); "
                f"set {ENV_HOME} to a writable folder"
            ) from exc
    return path


def models_dir(create: bool = True) -> Path:
    """Folder for pretrained generator checkpoints (``home()/models``)."""
    return subdir(MODELS, create)


def latents_dir(create: bool = True) -> Path:
    """Folder for cached inversion latents (``home()/latents``)."""
    return subdir(LATENTS, create)


def unique_names(names: Iterable[str], unsafe: str = r"[^A-Za-z0-9_.-]+", fill: str = "_",
                 fallback: str = "item", separator: str = "-") -> list[str]:
    """File-name-safe, distinct names: runs of ``unsafe`` characters become ``fill`` (ends
    stripped, 60 characters at most, ``fallback`` when nothing is left), and repeats are numbered
    ``name``, ``name<separator>2``, …"""
    taken: list[str] = []
    for text in names:
        base = re.sub(unsafe, fill, text).strip(fill + ".")[:60] or fallback
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{separator}{n}", n + 1
        taken.append(name)
    return taken
