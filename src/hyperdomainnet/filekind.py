"""What a file looks like, from its first bytes: for errors that name what was given, not only
what was expected (``x.png is a PNG image; expected a domain file``)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

SAFETENSORS = "a safetensors file"
ZIP = "a ZIP archive (a PyTorch .pt checkpoint?)"
PICKLE = "a Python pickle (a .pkl or legacy .pt checkpoint?)"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"PK\x03\x04", ZIP), (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"))
_HEAD = 4096
_MAX_HEADER = 100_000_000  # the safetensors reader's own limit on the JSON header


def looks_like(path: str | os.PathLike[str]) -> str:
    """``path`` described by its content: "a PNG image", "a text file", ``SAFETENSORS``, ``ZIP``,
    ``PICKLE``, "an empty file", "a folder", … ("binary data of an unknown kind" otherwise)."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if not head:
        return "an empty file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return PICKLE
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < _MAX_HEADER:
        return SAFETENSORS  # possibly truncated: its reader says so
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut by the read
                return "a text file"
    return "binary data of an unknown kind"
