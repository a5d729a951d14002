"""SHA-256 of files, remembered per (path, size, mtime) so a large checkpoint is hashed once."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 22
RECORD_SUFFIX = ".sha256.json"


def record_path(path: str | os.PathLike[str]) -> Path:
    """The side file remembering ``path``'s digest: ``<name>.sha256.json`` beside it."""
    p = Path(path)
    return p.with_name(p.name + RECORD_SUFFIX)


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def remembered_sha256(path: str | os.PathLike[str]) -> str | None:
    """The digest recorded for ``path`` if the record still matches its size and mtime, else None."""
    p = Path(path)
    try:
        record = json.loads(record_path(p).read_text())
        if record.get("size") == _stamp(p)["size"] and record.get("mtime_ns") == _stamp(p)["mtime_ns"]:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def remember_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record ``digest`` for ``path`` (best effort: an unwritable folder only costs a re-hash later)."""
    from .atomic import atomic_path

    p = Path(path)
    try:
        with atomic_path(record_path(p)) as tmp:
            tmp.write_text(json.dumps({"sha256": digest, **_stamp(p)}))
    except OSError:
        pass


def file_identity_sha256(path: str | os.PathLike[str]) -> str:
    """``path``'s SHA-256, from its record when the file is unchanged, else hashed and recorded."""
    digest = remembered_sha256(path)
    if digest is None:
        digest = sha256_file(path)
        remember_sha256(path, digest)
    return digest
