"""SHA-256 of files, remembered per file identity so a large checkpoint is hashed once.

A remembered digest is tied to the file it was computed from: its resolved path, size, mtime,
ctime and inode. Replacing or rewriting the file changes its inode or ctime (which no user call can
set back), so the digest is computed again. Records live in the cache's own ``hashes/`` folder
(one JSON file per path, named by the path's hash), never beside the file: a side file dropped
next to a model cannot vouch for it, and a corrupt record only costs a re-hash.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import paths
from .atomic import atomic_path
from .errors import ConfigError

CHUNK = 1 << 22
RECORDS = "hashes"
STAMP_FIELDS: tuple[str, ...] = ("size", "mtime_ns", "ctime_ns", "inode")


def record_path(path: str | os.PathLike[str], create: bool = False) -> Path:
    """Where the digest of ``path`` is remembered: ``<cache>/hashes/<BLAKE2b of the resolved path>.json``."""
    key = hashlib.blake2b(str(Path(path).resolve()).encode(), digest_size=20).hexdigest()
    return paths.subdir(RECORDS, create) / f"{key}.json"


def _stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def remembered_sha256(path: str | os.PathLike[str]) -> str | None:
    """The digest recorded for ``path`` if its record matches the file's identity now, else None."""
    p = Path(path)
    try:
        record = json.loads(record_path(p).read_text())
        digest = record["sha256"]
        if _stamp(p) == {k: record[k] for k in ("path", *STAMP_FIELDS)} and isinstance(digest, str):
            return digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no record, a corrupt one, or a changed file: hash again
    return None


def remember_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record ``digest`` for ``path`` (best effort: an unwritable cache only costs a re-hash later)."""
    p = Path(path)
    try:
        with atomic_path(record_path(p, create=True)) as tmp:
            tmp.write_text(json.dumps({"sha256": digest, **_stamp(p)}))
    except (OSError, ConfigError):
        pass


def file_identity_sha256(path: str | os.PathLike[str]) -> str:
    """``path``'s SHA-256, from its record when the file is unchanged, else hashed and recorded."""
    digest = remembered_sha256(path)
    if digest is None:
        digest = sha256_file(path)
        remember_sha256(path, digest)
    return digest
