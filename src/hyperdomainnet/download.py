"""Verified file downloads on standard transports, placed atomically.

:func:`download` tries each URL in order with the transport that fits it:

* ``https://huggingface.co/<repo>/resolve/<commit>/<path>``: :func:`huggingface_hub.hf_hub_download`
  pinned to that commit (its locks, resume, progress, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` mirrors);
* Google Drive links: ``gdown`` (it handles the large-file confirmation page);
* any other URL: :func:`torch.hub.download_url_to_file`;
* a local path (a mirror folder): a copy.

A URL whose path ends in ``.bz2`` serves the file bzip2-compressed: it is decompressed before the check.

The bytes land in a temporary sibling of the destination, which they replace only when they pass:
not an HTML page (a Drive quota or sign-in page), the expected size and SHA-256 when known (the
digest is then remembered). Every failure is one :class:`DownloadError` line listing each source
tried and why it failed, the setting or URL to get the file another way, and the path to put it at.
"""
from __future__ import annotations

import bz2
import os
import re
import shutil
import urllib.error
import warnings
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_path
from .errors import DownloadError
from .hashing import remember_sha256, sha256_file
from .progress import interactive

HF_URL = re.compile(r"https://huggingface\.co/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[0-9a-f]{40})/(?P<path>.+)")
DRIVE_HOSTS = ("drive.google.com", "docs.google.com")
HTML_PEEK = 512
HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<!--")
UNREACHABLE = "not reachable (offline, or blocked by a firewall)"
MAX_DECOMPRESSED = 16 * 2**30  # a compressed download of no pinned size may expand to this many bytes


class UnverifiedDownloadWarning(UserWarning):
    """A file was accepted without a published SHA-256 to check it against."""


def _hugging_face(match: re.Match[str], tmp: Path, dest: Path) -> None:
    from huggingface_hub import hf_hub_download

    staging = dest.parent / f".{dest.name}.hf"  # HF's folder: an interrupted download resumes there
    try:
        os.replace(hf_hub_download(match["repo"], match["path"], revision=match["rev"], local_dir=staging), tmp)
    except BaseException:
        if not any(staging.rglob("*.incomplete")):  # keep only a partial download, for resuming
            shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _google_drive(url: str, tmp: Path) -> None:
    import gdown
    from requests.exceptions import ConnectionError as NoConnection

    try:
        done = gdown.download(url, output=str(tmp), quiet=not interactive())
    except NoConnection:
        raise OSError(UNREACHABLE) from None
    except Exception as exc:  # noqa: BLE001 - gdown raises its own types, with pages of advice
        raise OSError(f"Google Drive refused the file (download quota exceeded, or not shared): "
                      f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None
    if done is None:
        raise OSError("Google Drive served no file (download quota exceeded, or not shared)")


def _decompress_bz2(tmp: Path, limit: int) -> None:
    """Replace the bzip2 file ``tmp`` by its decompressed bytes (streamed), refusing more than
    ``limit`` of them (a small file can expand without bound)."""
    packed = tmp.with_name(tmp.name + ".bz2")
    os.replace(tmp, packed)
    written = 0
    try:
        with bz2.open(packed) as source, open(tmp, "wb") as target:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise DownloadError(f"decompresses to more than the {limit:,} bytes expected")
                target.write(chunk)
    finally:
        packed.unlink(missing_ok=True)


def _transfer(url: str, tmp: Path, dest: Path, size: int | None) -> None:
    """Write the bytes behind ``url`` (meant for ``dest``, of ``size`` bytes when known) to ``tmp``
    with the transport that fits it."""
    match = HF_URL.fullmatch(url)
    if not url.startswith(("http://", "https://")):
        shutil.copyfile(url, tmp)
    elif match:
        _hugging_face(match, tmp, dest)
    elif url.split("/")[2] in DRIVE_HOSTS:
        _google_drive(url, tmp)
    else:
        from torch.hub import download_url_to_file

        download_url_to_file(url, str(tmp), progress=interactive())
    if url.split("?")[0].endswith(".bz2"):
        _decompress_bz2(tmp, MAX_DECOMPRESSED if size is None else size)


def _check(tmp: Path, size: int | None, sha256: str | None) -> str:
    """The SHA-256 of the bytes in ``tmp``; DownloadError if they are an HTML page or not the pinned file."""
    with open(tmp, "rb") as fh:
        head = fh.read(HTML_PEEK).lstrip().lower()
    if head.startswith(HTML_STARTS):
        raise DownloadError("served an HTML page instead of the file (a Google Drive quota or sign-in page, "
                            "or a proxy's)")
    got = tmp.stat().st_size
    if size is not None and got != size:
        raise DownloadError(f"wrong size: got {got:,} bytes, expected {size:,}")
    digest = sha256_file(tmp)
    if sha256 is not None and digest != sha256:
        raise DownloadError(f"checksum mismatch: got sha256 {digest}, expected {sha256}")
    return digest


def _source(url: str) -> str:
    return url.split("/")[2] if url.startswith(("http://", "https://")) else url


def _reason(exc: BaseException) -> str:
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, LocalEntryNotFoundError):
        return "Hugging Face not reachable (offline, or HF_HUB_OFFLINE is set)"
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return UNREACHABLE
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def download(urls: Sequence[str], dest: str | os.PathLike[str], sha256: str | None, name: str,
             size: int | None = None, hint: str = "") -> Path:
    """Fetch ``dest`` from the first of ``urls`` (URLs or local paths) that delivers the file.

    The bytes must not be an HTML page and must have ``size`` bytes and digest ``sha256`` when these
    are given; ``sha256=None`` (not pinned) accepts them, remembers their digest and warns with
    :class:`UnverifiedDownloadWarning`. ``dest`` only ever appears complete and checked.
    Raises :class:`DownloadError`: could not download NAME (each source: reason); HINT, or download
    it yourself from URL and place it at DEST.
    """
    dest = Path(dest)
    reasons = []
    for url in urls:
        try:
            with atomic_path(dest) as tmp:
                _transfer(url, tmp, dest, size)
                digest = _check(tmp, size, sha256)
        except Exception as exc:  # noqa: BLE001 - each transport raises its own types; next source
            reasons.append(f"{_source(url)}: {_reason(exc)}")
            continue
        remember_sha256(dest, digest)
        if sha256 is None:
            warnings.warn(f"{name}: no pinned SHA-256 exists; accepted the download with sha256 "
                          f"{digest} (remembered for {dest})", UnverifiedDownloadWarning, stacklevel=2)
        return dest
    published = [u for u in urls if u.startswith(("http://", "https://"))]
    manual = published[0] if published else "its publisher"
    other = f"{hint}, or " if hint else ""
    raise DownloadError(f"could not download {name} ({'; '.join(reasons) or 'no source known'}); "
                        f"{other}download it yourself from {manual} and place it at {dest}")
