"""Robust file downloads: mirrors, resume, checksums, atomic placement.

:func:`download_file` fetches one file from a list of mirror URLs:

* data goes to ``<dest>.part``; an existing part file is resumed with an HTTP ``Range`` request
  (guarded by ``If-Range`` when the server gave a validator), and a server that ignores the range
  (``200`` instead of ``206``) simply restarts the transfer from zero;
* an interrupted transfer is retried (resuming) a few times, then the next mirror is tried;
* the size and SHA-256 are checked *before* the file is moved to ``dest`` with ``os.replace``, so
  ``dest`` only ever holds a complete, verified file; a checksum mismatch deletes the part file;
* Google Drive share links are rewritten to the direct-download form, and an HTML page served
  instead of the file (a quota or sign-in page, an error page) is recognised and reported;
* every failure is an :class:`~hyperdomainnet.errors.HDNError` with one line: what went wrong and
  where to get the file by hand.

A small ``<dest>.sha256.json`` record next to each downloaded file remembers its hash, size and
modification time, so later checks (:func:`verify_file`) need not re-hash hundreds of megabytes.

Only the standard library (``urllib``) does HTTP; ``rich`` (or ``tqdm``) draws the progress bar
when standard error is a terminal.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import HDNError

__all__ = [
    "UnverifiedDownloadWarning",
    "download_file",
    "google_drive_direct_url",
    "sha256_file",
    "verify_file",
    "file_digest",
    "read_record",
    "record_path",
    "part_path",
]

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 2
#: Seconds to wait before retry ``n`` (multiplied by ``n``); tests set it to 0.
RETRY_DELAY = 1.0
HTML_SNIFF_BYTES = 4096

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DRIVE_HOSTS = ("drive.google.com", "docs.google.com")
_DRIVE_DIRECT = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded without a known SHA-256 to check it against."""


class _MirrorError(Exception):
    """This mirror failed; try the next one. ``transient`` failures are worth a retry."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class _FatalError(Exception):
    """A failure no other mirror can fix (disk full, cannot write)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Restart(Exception):
    """The part file is unusable for this server: delete it and start again from byte 0."""


# ----------------------------------------------------------------------------------------------
# small helpers


def _user_agent() -> str:
    try:
        from importlib.metadata import version

        v = version("hyperdomainnet")
    except Exception:  # noqa: BLE001 - metadata missing in a source checkout
        v = "dev"
    return f"hyperdomainnet/{v} (python-urllib/{sys.version_info[0]}.{sys.version_info[1]})"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not _SHA256_RE.match(value):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return value


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _host(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    return parsed.netloc or parsed.scheme or url


def part_path(dest: str | os.PathLike[str]) -> Path:
    """The in-progress file for ``dest``: ``dest`` with ``.part`` appended to its name."""
    dest = Path(dest)
    return dest.with_suffix(dest.suffix + ".part")


def _part_meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def record_path(path: str | os.PathLike[str]) -> Path:
    """The hash record kept next to a downloaded file: ``<name>.sha256.json``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256.json")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        path.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Best effort: a record that cannot be written only costs a re-hash later."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        _unlink(tmp)


# ----------------------------------------------------------------------------------------------
# URLs


def google_drive_direct_url(url: str) -> str:
    """Rewrite a Google Drive share link to the direct-download form; other URLs pass through.

    ``https://drive.google.com/file/d/ID/view?usp=sharing``, ``…/open?id=ID``, ``…/uc?id=ID`` and
    ``https://docs.google.com/uc?export=download&id=ID`` all become
    ``https://drive.usercontent.google.com/download?id=ID&export=download&confirm=t`` (the
    ``confirm=t`` skips the "cannot scan this large file for viruses" page). Folder links cannot
    be downloaded as one file and are returned unchanged.
    """
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc.lower()
    if host not in _DRIVE_HOSTS and not host.endswith(".drive.google.com"):
        return url
    file_id = None
    match = re.search(r"/file/d/([A-Za-z0-9_-]+)", parsed.path)
    if match:
        file_id = match.group(1)
    else:
        ids = urllib.parse.parse_qs(parsed.query).get("id")
        if ids and re.fullmatch(r"[A-Za-z0-9_-]+", ids[0]):
            file_id = ids[0]
    if not file_id:
        return url
    return _DRIVE_DIRECT.format(id=file_id)


# ----------------------------------------------------------------------------------------------
# hashing and records


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The hash record of ``path`` if it still describes the file (same size and mtime)."""
    path = Path(path)
    rec = _read_json(record_path(path))
    if rec is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
        return None
    if not isinstance(rec.get("sha256"), str) or not _SHA256_RE.match(rec["sha256"]):
        return None
    return rec


def _write_record(path: Path, digest: str, verified: bool, url: str | None) -> None:
    st = path.stat()
    _write_json(
        record_path(path),
        {
            "file": path.name,
            "sha256": digest,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "verified": bool(verified),
            "url": url,
        },
    )


def file_digest(path: str | os.PathLike[str], expected: str | None = None) -> str:
    """SHA-256 of ``path`` from its still-valid ``.sha256.json`` record, else by hashing it.

    A fresh hash is written back as the record (``verified`` when it equals ``expected``), so
    checking a large cached file costs one full read only once.
    """
    path = Path(path)
    rec = read_record(path)
    if rec is not None:
        return str(rec["sha256"])
    digest = sha256_file(path)
    old = _read_json(record_path(path)) or {}
    _write_record(path, digest, verified=expected is not None and digest == expected,
                  url=old.get("url"))
    return digest


def verify_file(path: str | os.PathLike[str], sha256: str | None = None,
                size: int | None = None, use_record: bool = True) -> bool:
    """True when ``path`` is a file of the given size and SHA-256 (either may be ``None``).

    With ``use_record`` the hash comes from the ``.sha256.json`` record when that record still
    matches the file's size and modification time; otherwise the file is hashed and the record
    refreshed.
    """
    path = Path(path)
    expected = _normalise_sha256(sha256)
    try:
        st = path.stat()
    except OSError:
        return False
    if not path.is_file() or (size is not None and st.st_size != size):
        return False
    if expected is None:
        return True
    digest = file_digest(path, expected) if use_record else sha256_file(path)
    return digest == expected


# ----------------------------------------------------------------------------------------------
# progress display


class _NullBar:
    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, total: int | None, done: int) -> None:
        return None

    def advance(self, n: int) -> None:
        return None


class _RichBar(_NullBar):
    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._label = label
        self._task: Any = None

    def __enter__(self) -> _RichBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def start(self, total: int | None, done: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task(self._label, total=total, completed=done)
        else:
            self._progress.reset(self._task, total=total, completed=done)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


class _TqdmBar(_NullBar):
    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, total: int | None, done: int) -> None:
        from tqdm import tqdm

        if self._bar is not None:
            self._bar.close()
        self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=self._label, file=sys.stderr, dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _progress_bar(enabled: bool, label: str) -> _NullBar:
    if not enabled or not _stderr_is_tty():
        return _NullBar()
    try:
        return _RichBar(label)
    except ImportError:
        pass
    try:
        import tqdm  # noqa: F401

        return _TqdmBar(label)
    except ImportError:
        return _NullBar()


# ----------------------------------------------------------------------------------------------
# locking (two processes fetching the same file wait for each other)


@contextlib.contextmanager
def _file_lock(dest: Path, label: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no inter-process lock
        yield
        return
    lock = dest.with_name(dest.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is downloading {label} …", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        # Whoever waits on this (now unlinked) lock re-checks dest first and finds it done.
        if dest.exists():
            _unlink(lock)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# HTTP


def _describe_url_error(reason: object) -> tuple[str, bool]:
    """(text, transient) for the ``reason`` of a URLError or a raw socket error."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(reason, FileNotFoundError):
        return "file not found", False
    if isinstance(reason, socket.gaierror):
        return "host not found (no network?)", False
    if isinstance(reason, TimeoutError):
        return "timed out", True
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {getattr(reason, 'reason', None) or reason}", False
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "connection reset", True
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower(), True
    return _one_line(str(reason)) or type(reason).__name__, True


def _looks_like_html(content_type: str) -> bool:
    ctype = content_type.split(";")[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml")


def _html_reason(head: bytes) -> str:
    text = head.decode("utf-8", "replace")
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    title = _one_line(match.group(1))[:80] if match else ""
    hint = ""
    low = text.lower()
    if "quota" in low or "too many users" in low:
        hint = " - the Google Drive download quota is exhausted, try later or another mirror"
    elif "sign in" in low or "accounts.google.com" in low:
        hint = " - the link needs a sign-in or is not shared publicly"
    title_part = f" (page title: {title!r})" if title else ""
    return f"received an HTML page instead of the file{title_part}{hint}"


def _sniff_html(first: bytes) -> bool:
    head = first[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml version")) and (
        b"<html" in first[:HTML_SNIFF_BYTES].lower()
    )


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    if not value:
        return None
    m = _CONTENT_RANGE_RE.match(value.strip())
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _unsatisfied_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+\*/(\d+)", (value or "").strip(), re.IGNORECASE)
    return int(m.group(1)) if m else None


def _validator(headers: Any) -> str | None:
    """A strong ETag or else Last-Modified: what ``If-Range`` may quote on resume."""
    etag = headers.get("ETag")
    if etag and not str(etag).startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


def _open(url: str, headers: dict[str, str], timeout: float) -> Any:
    req = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - mirrors are https/file
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as exc:
        text, transient = _describe_url_error(exc.reason)
        raise _MirrorError(text, transient) from exc
    except TimeoutError as exc:
        raise _MirrorError("timed out", True) from exc
    except (http.client.HTTPException, OSError) as exc:
        text, transient = _describe_url_error(exc)
        raise _MirrorError(text, transient) from exc


class _Transfer:
    """One mirror URL, streamed into the part file, resuming and retrying as needed."""

    def __init__(self, url: str, part: Path, expected: str | None, size: int | None,
                 timeout: float, bar: _NullBar) -> None:
        self.url = url
        self.part = part
        self.meta_path = _part_meta_path(part)
        self.expected = expected
        self.size = size
        self.timeout = timeout
        self.bar = bar
        self.resumed_from = 0

    # -- part file bookkeeping --------------------------------------------------------------

    def discard_part(self) -> None:
        _unlink(self.part)
        _unlink(self.meta_path)

    def usable_offset(self) -> int:
        """Bytes of the part file that may be resumed from (0 = start over)."""
        try:
            n = self.part.stat().st_size
        except OSError:
            return 0
        meta = _read_json(self.meta_path) or {}
        same_source = meta.get("url") == self.url
        stale = (
            n == 0
            or (self.size is not None and n > self.size)
            or (self.size is not None and meta.get("total") not in (None, self.size))
            # Without a checksum a part file from another server could splice two different
            # files together unnoticed, so only resume our own.
            or (self.expected is None and not same_source)
        )
        if stale:
            self.discard_part()
            return 0
        return n

    def write_meta(self, validator: str | None, total: int | None) -> None:
        _write_json(self.meta_path, {"url": self.url, "validator": validator, "total": total})

    # -- one HTTP exchange ------------------------------------------------------------------

    def fetch_once(self) -> str:
        """Stream the (rest of the) file into the part file; return the SHA-256 of the part.

        Raises ``_MirrorError`` (transient when worth a retry), ``_Restart`` or ``_FatalError``.
        """
        offset = self.usable_offset()
        if offset and self.size is not None and offset == self.size:
            self.resumed_from = offset
            return sha256_file(self.part)  # complete already; only verification is left

        headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity", "Accept": "*/*"}
        meta = _read_json(self.meta_path) or {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if meta.get("url") == self.url and meta.get("validator"):
                headers["If-Range"] = str(meta["validator"])
        try:
            resp = _open(self.url, headers, self.timeout)
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                if exc.code == 416 and offset:
                    total = _unsatisfied_total(exc.headers.get("Content-Range"))
                    if total is not None and total == offset:
                        self.resumed_from = offset
                        return sha256_file(self.part)
                    raise _Restart() from exc
                transient = exc.code in (408, 429) or exc.code >= 500
                raise _MirrorError(f"HTTP {exc.code} {exc.reason}".strip(), transient) from exc

        with contextlib.closing(resp):
            status = getattr(resp, "status", None) or 200
            content_type = resp.headers.get("Content-Type", "") or ""
            length_header = resp.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None

            if status == 206 and offset:
                crange = _parse_content_range(resp.headers.get("Content-Range"))
                if crange is None or crange[0] != offset:
                    raise _Restart()  # a range we did not ask for
                total = crange[2]
                mode = "ab"
            elif status == 200:
                offset = 0  # no Range sent, or the server ignored it (or If-Range failed)
                total = length
                mode = "wb"
            else:
                raise _MirrorError(f"unexpected HTTP status {status}")

            if _looks_like_html(content_type):
                raise _MirrorError(_html_reason(resp.read(HTML_SNIFF_BYTES)))
            if self.size is not None and total is not None and total != self.size:
                raise _MirrorError(
                    f"server offers {total} bytes but {self.size} are expected (wrong file?)")

            need = (total - offset) if total is not None else None
            if need:
                try:
                    free = shutil.disk_usage(self.part.parent).free
                except OSError:
                    free = None
                if free is not None and free < need:
                    raise _FatalError(
                        f"not enough disk space in {self.part.parent}: "
                        f"{_fmt_bytes(need)} needed, {_fmt_bytes(free)} free")

            hasher = hashlib.sha256()
            if offset:
                with open(self.part, "rb") as existing:
                    for block in iter(lambda: existing.read(CHUNK_SIZE), b""):
                        hasher.update(block)
            self.resumed_from = offset
            self.bar.start(total, offset)

            received = 0
            f: Any = None
            validator = _validator(resp.headers)
            # read1 returns what has arrived (up to CHUNK_SIZE), so a stall or a cut connection
            # loses nothing already received.
            read = getattr(resp, "read1", None) or resp.read
            try:
                while True:
                    try:
                        block = read(CHUNK_SIZE)
                    except http.client.IncompleteRead as exc:
                        if exc.partial and f is not None:
                            self._write(f, exc.partial)
                            hasher.update(exc.partial)
                            received += len(exc.partial)
                        raise _MirrorError(self._cut_reason(offset + received, total),
                                           transient=True) from exc
                    except TimeoutError as exc:
                        raise _MirrorError(
                            f"timed out after {_fmt_bytes(offset + received)} of "
                            f"{_fmt_bytes(total)}", transient=True) from exc
                    except (http.client.HTTPException, OSError) as exc:
                        text, _ = _describe_url_error(exc)
                        raise _MirrorError(f"{text} after {_fmt_bytes(offset + received)} of "
                                           f"{_fmt_bytes(total)}", transient=True) from exc
                    if not block:
                        break
                    if f is None:
                        # Open (and, on a restart, truncate) the part file only once the first
                        # block is known not to be an error page.
                        if offset == 0 and _sniff_html(block):
                            raise _MirrorError(_html_reason(block[:HTML_SNIFF_BYTES]))
                        try:
                            f = open(self.part, mode)  # noqa: SIM115 - closed in finally
                        except OSError as exc:
                            raise _FatalError(
                                f"cannot write {self.part}: {exc.strerror or exc}") from exc
                        self.write_meta(validator, total)
                    self._write(f, block)
                    hasher.update(block)
                    received += len(block)
                    self.bar.advance(len(block))
                if f is None and offset == 0:
                    f = open(self.part, "wb")  # noqa: SIM115 - an empty file is a valid download
                    self.write_meta(validator, total)
                if f is not None:
                    f.flush()
                    with contextlib.suppress(OSError):
                        os.fsync(f.fileno())
            finally:
                if f is not None:
                    f.close()

            got = offset + received
            if length is not None and received < length:
                raise _MirrorError(self._cut_reason(got, total), transient=True)
            if total is not None and got < total:
                raise _MirrorError(self._cut_reason(got, total), transient=True)
            return hasher.hexdigest()

    def _write(self, f: Any, block: bytes) -> None:
        try:
            f.write(block)
        except OSError as exc:
            raise _FatalError(f"cannot write {self.part}: {exc.strerror or exc}") from exc

    @staticmethod
    def _cut_reason(got: int, total: int | None) -> str:
        return f"connection closed after {_fmt_bytes(got)} of {_fmt_bytes(total)}"

    # -- the retry loop for this mirror ------------------------------------------------------

    def run(self, retries: int) -> str:
        """Download and verify; return the digest, or raise ``_MirrorError`` / ``_FatalError``."""
        attempt = 0
        restarted_after_mismatch = False
        while True:
            try:
                digest = self.fetch_once()
            except _Restart:
                self.discard_part()
                attempt += 1
                if attempt > retries + 1:
                    raise _MirrorError(
                        "server keeps answering range requests incorrectly") from None
                continue
            except _MirrorError as exc:
                if exc.transient and attempt < retries:
                    attempt += 1
                    time.sleep(RETRY_DELAY * attempt)
                    continue
                raise

            try:
                actual_size = self.part.stat().st_size
            except OSError:
                raise _MirrorError("the partial download vanished while it was written") from None
            if self.size is not None and actual_size != self.size:
                self.discard_part()
                raise _MirrorError(f"got {actual_size} bytes, expected {self.size}")
            if self.expected is not None and digest != self.expected:
                self.discard_part()
                if self.resumed_from and not restarted_after_mismatch:
                    # The part file may have come from an older or different source: once more
                    # from zero before blaming this mirror.
                    restarted_after_mismatch = True
                    continue
                raise _MirrorError(
                    f"checksum mismatch: expected sha256 {self.expected}, got {digest}")
            return digest


# ----------------------------------------------------------------------------------------------
# public entry point


def download_file(urls: Sequence[str], dest: str | os.PathLike[str], sha256: str | None,
                  size: int | None = None, progress: bool = True, *, name: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES) -> Path:
    """Download one file from the first mirror that delivers it intact; return ``dest``.

    Args:
        urls: mirror URLs, tried in order (``https://``, ``http://`` or ``file://``; Google
            Drive share links are converted to direct downloads).
        dest: final path. It only ever appears complete and verified (atomic ``os.replace``).
        sha256: expected SHA-256 hex digest, or ``None`` when no published value exists: the
            file is then accepted as downloaded, its hash recorded next to it and an
            :class:`UnverifiedDownloadWarning` issued naming that hash.
        size: expected size in bytes, if known (checked before and after the transfer).
        progress: draw a progress bar (only when standard error is a terminal).
        name: what to call the file in messages (default: ``dest``'s file name).
        timeout: socket timeout in seconds for connecting and for each read.
        retries: extra attempts per mirror after an interrupted or transient failure; each
            attempt resumes from the part file.

    An existing ``dest`` that already matches ``sha256``/``size`` is returned without network
    access. A partial download is kept as ``<dest>.part`` and resumed by the next call.

    Raises:
        HDNError: with one line, ``could not download NAME (reason); download it yourself from
            URL and place it at PATH``.
        ValueError: ``sha256`` is not a 64-digit hex string.
    """
    dest = Path(dest).expanduser()
    label = name or dest.name
    expected = _normalise_sha256(sha256)
    if size is not None and size < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    if isinstance(urls, (str, bytes)):
        urls = [urls.decode() if isinstance(urls, bytes) else urls]
    mirrors = [str(u).strip() for u in urls if u and str(u).strip()]
    manual = mirrors[0] if mirrors else "the project's documentation"

    def failure(reason: str) -> HDNError:
        return HDNError(_one_line(
            f"could not download {label} ({reason}); "
            f"download it yourself from {manual} and place it at {dest}"))

    if not mirrors:
        raise failure("no download URL is known")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failure(f"cannot create folder {dest.parent}: {exc.strerror or exc}") from exc

    with _file_lock(dest, label):
        if dest.is_file() and verify_file(dest, expected, size):
            return dest

        part = part_path(dest)
        reasons: list[str] = []
        with _progress_bar(progress, label) as bar:
            for url in mirrors:
                direct = google_drive_direct_url(url)
                transfer = _Transfer(direct, part, expected, size, timeout, bar)
                try:
                    digest = transfer.run(retries)
                except _MirrorError as exc:
                    reasons.append(f"{_host(direct)}: {exc.reason}")
                    continue
                except _FatalError as exc:
                    raise failure(exc.reason) from None
                try:
                    os.replace(part, dest)
                except OSError as exc:
                    raise failure(f"cannot move the download into place: "
                                  f"{exc.strerror or exc}") from exc
                _unlink(transfer.meta_path)
                _write_record(dest, digest, verified=expected is not None, url=url)
                if expected is None:
                    warnings.warn(
                        f"{label}: no published SHA-256 is known for this file, so it is "
                        f"unverified; downloaded sha256 is {digest} (recorded in "
                        f"{record_path(dest)})",
                        UnverifiedDownloadWarning, stacklevel=2)
                return dest

        reason = "; ".join(reasons)
        try:
            kept = part.stat().st_size
        except OSError:
            kept = 0
        if kept:
            reason += f"; {_fmt_bytes(kept)} kept in {part.name}, run again to resume"
        raise failure(reason)
