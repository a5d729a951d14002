"""What keeps a run folder whole: an exclusive lock held for the whole run, and a tolerant
reader of its ``log.jsonl``.

The lock is the operating system's (``flock`` on ``.hdn-run.lock`` in the folder), so it is
released on any exit of the holder — a crash or SIGKILL included: a lock file left by a dead
process is simply taken over. The file records the holder's pid, host and start time for the
refusal message of a second run.
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic import full_disk_error, is_full_disk
from ..errors import ConfigError

LOCK_NAME = ".hdn-run.lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False


def _holder(path: Path) -> str:
    """"pid P on host H since T" from a held lock file, or a plain phrase when unreadable."""
    try:
        info = json.loads(path.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {int(info['pid'])} on host {info['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _in_use(path: Path) -> ConfigError:
    return ConfigError(f"{path.parent} is in use by another run ({_holder(path)}); wait for it to finish "
                       "or choose another --out directory")


def check_run_folder_free(run_dir: Path) -> None:
    """Refuse, before any work, a folder whose lock another process holds (a stale lock file
    of a dead process does not count)."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
    except OSError:
        return
    try:
        if not _try_lock(fd):
            raise _in_use(run_dir / LOCK_NAME)
    finally:
        os.close(fd)


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock; ConfigError when another holds it.

    A holder removes the file before unlocking, so a lock taken on a file that is no longer the
    one at ``path`` is dropped and taken again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise _in_use(path)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s exclusive lock (the folder is created) until the block exits."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = _acquire(path)
    try:
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.write(fd, record.encode())
        except OSError as exc:
            raise (full_disk_error(path) if is_full_disk(exc) else exc) from None
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``: JSON objects with an integer ``step``, in file order.

    Lines that are not such records (a line torn by a full disk or a kill, a hand edit, a
    foreign file) are skipped with one warning naming how many and the first; a missing file
    has no records."""
    if not path.is_file():
        return []
    records, bad = [], []
    for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int) and not isinstance(record["step"], bool):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) (first: line {bad[0]}); "
                      "they are dropped from the log", stacklevel=2)
    return records
