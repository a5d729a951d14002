"""Atomic file writes (temporary sibling, fsync, ``os.replace``) and output-destination checks."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError, StorageError

TMP_SUFFIX = ".tmp"
STALE_AFTER_S = 3600.0


def _umask_mode() -> int:
    """The mode a new regular file gets under the process umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(directory: str | os.PathLike[str], older_than_s: float = STALE_AFTER_S) -> int:
    """Delete our own leftovers (``.<name>.<random>.tmp`` from a killed writer) older than
    ``older_than_s`` seconds in ``directory``; return how many were removed."""
    folder = Path(directory)
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


#: How writers report a full disk: OSError errno, and the messages of PyTorch's zip writer.
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_DISK_MESSAGES = ("file write failed", "unexpected pos", "No space left on device")


def is_full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` is a write failing for want of space (OSError ENOSPC/EDQUOT, or the
    RuntimeError PyTorch's checkpoint writer raises then)."""
    if isinstance(exc, OSError):
        return exc.errno in FULL_DISK_ERRNOS
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in FULL_DISK_MESSAGES)


def full_disk_error(path: str | os.PathLike[str]) -> StorageError:
    """The one-line error for a write to ``path`` that ran out of space, with the space left."""
    folder = Path(path).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:,.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return StorageError(f"cannot write {path}: no space left on the device ({free} in {folder}); "
                        "free some space or write elsewhere, then run the command again")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically with
    the mode the umask gives a new file.

    On an exception the temporary file is removed and ``path`` is left untouched; a full disk
    becomes a one-line ``StorageError`` naming ``path`` and the space left.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        if is_full_disk(exc):
            raise full_disk_error(target) from None
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _writable_parent(path: Path, option: str) -> None:
    """Raise unless ``path``'s nearest existing ancestor is a writable directory."""
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is a file, not a directory; choose another {option}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {ancestor} is not writable; choose another {option}")


def check_output_file(path: str | os.PathLike[str], force: bool = False, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be written: its directory is (or can be made) a
    writable directory, it is not a directory, and it does not exist unless ``force``."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {target} is a directory; give a file name")
    if target.exists() and not force:
        raise ConfigError(f"{option} {target} already exists; pass --force to replace it")
    _writable_parent(target, option)
    return target


def check_output_dir(path: str | os.PathLike[str], force: bool = False, option: str = "--out") -> Path:
    """Check, before any work, that directory ``path`` can be written: it is a directory or can be
    created, it is writable, and (unless ``force``) it holds no files yet."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{option} {target} is a file; give a directory")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {target} is not writable; choose another {option}")
        if not force and any(target.iterdir()):
            raise ConfigError(f"{option} {target} already holds files; pass --force to write into it, "
                              f"or choose another {option}")
        return target
    _writable_parent(target, option)
    return target
