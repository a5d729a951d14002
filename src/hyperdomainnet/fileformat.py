"""Our file format: named float tensors in a safetensors file plus one JSON metadata entry.

The safetensors metadata entry ``hyperdomainnet`` holds a JSON object with at least ``format``
(which kind of file, e.g. ``"hyperdomainnet.domain"``) and ``version`` (an integer; readers refuse
versions newer than they know). Files are written atomically. Non-finite tensors (NaN, ±inf) are
refused both when writing and when reading: they only come from a diverged run and render black
images.

Every artefact (domain, hypernetwork, latent) uses :func:`save` and :func:`load`::

    fileformat.save(path, {"latent": w}, {"image": "a.png"}, file_format="hyperdomainnet.latent", version=1)
    tensors, meta = fileformat.load(path, file_format="hyperdomainnet.latent", max_version=1,
                                    what="latent file", required=("image",))
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .atomic import atomic_path
from .errors import FileFormatError
from .filekind import SAFETENSORS, looks_like

META_KEY = "hyperdomainnet"
RESERVED: tuple[str, ...] = ("format", "version")


def nonfinite_names(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or ±inf, also once cast to float32 (the
    precision they are used in: a float64 1e300 is inf there)."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t.float()).all())]


def save(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any],
         *, file_format: str, version: int) -> Path:
    """Write ``tensors`` (to CPU, contiguous) and ``metadata`` + ``format`` + ``version`` atomically.

    Raises FileFormatError for non-finite tensors or metadata that is not JSON-serialisable;
    nothing is written then.
    """
    bad = nonfinite_names(tensors)
    if bad:
        raise FileFormatError(f"refusing to write {path}: tensor {bad[0]!r} holds NaN or inf values "
                              "(a diverged run; lower the learning rate and train again)")
    try:
        meta = json.dumps({**metadata, "format": file_format, "version": version})
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"refusing to write {path}: its metadata is not JSON ({exc})") from None
    cpu = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata={META_KEY: meta})
    return Path(path)


def read_metadata(path: str | os.PathLike[str], what: str = "hyperdomainnet file (.safetensors)") -> dict[str, Any] | None:
    """The JSON metadata of a safetensors file, or None if it has no ``hyperdomainnet`` entry.

    Raises FileFormatError when the file is not readable safetensors (naming what it looks like and
    ``what`` was expected) or the entry is not a JSON object.
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        kind = looks_like(path)
        if kind != SAFETENSORS:
            raise FileFormatError(f"{path} is {kind}; expected a {what}") from None
        raise FileFormatError(f"{path} is not a readable safetensors file ({exc}); is it truncated?") from None
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path} has corrupt metadata (not a JSON object); write the file again")
    return meta


def load(path: str | os.PathLike[str], *, file_format: str, max_version: int, what: str,
         required: Sequence[str] = ()) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save`: (tensors, metadata without ``format`` and ``version``).

    ``what`` names the file for messages ("domain file"). One-line FileFormatError when the file
    is missing, unreadable, of another format, newer than ``max_version``, lacks a ``required``
    metadata key, or holds non-finite tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{what} {path} does not exist" + ("; it is a directory" if path.is_dir() else ""))
    meta = read_metadata(path, f"{what} (.safetensors)")
    if meta is None or meta.get("format") != file_format:
        found = "no hyperdomainnet metadata" if meta is None else f"format {meta.get('format')!r}"
        raise FileFormatError(f"{path} is not a {what} ({found}; expected {file_format!r})")
    version = meta.get("version")
    if not isinstance(version, int):
        raise FileFormatError(f"{path} has no valid format version in its metadata; the file is corrupt")
    if version > max_version:
        raise FileFormatError(f"{path} is {what} version {version}, newer than this hyperdomainnet "
                              f"reads ({max_version}); upgrade hyperdomainnet")
    missing = [k for k in required if k not in meta]
    if missing:
        raise FileFormatError(f"{path} is an incomplete {what}: its metadata lacks {', '.join(missing)}; "
                              "write the file again")
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path} is a corrupt {what} ({exc}); write it again") from None
    bad = nonfinite_names(tensors)
    if bad:
        raise FileFormatError(f"{path} holds NaN or inf values (tensor {bad[0]!r}): it comes from a diverged "
                              "run; train again with a lower learning rate")
    return tensors, {k: v for k, v in meta.items() if k not in RESERVED}
