"""User-facing errors: one line that names the problem and the fix."""
from __future__ import annotations


class HDNError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line and exits 1."""


class ConfigError(HDNError, ValueError):
    """A setting, option or preset is invalid."""


class FileFormatError(HDNError, ValueError):
    """A file is missing, corrupt, or of another kind than expected."""


class DownloadError(HDNError, OSError):
    """A download failed or a downloaded file does not verify."""


class DeviceError(HDNError, RuntimeError):
    """The requested device or precision is not available."""


def first_line(exc: BaseException, limit: int = 160, empty: str | None = None) -> str:
    """The informative line of an exception's message for a one-line error: its first non-blank line
    (after torch's ``WeightsUnpickler error:`` preamble), cut to ``limit`` characters; ``empty``
    (default: the exception's type name) when the message has none."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line[:limit] if line else (empty if empty is not None else type(exc).__name__)
class StorageError(HDNError, OSError):
    """A file could not be written: the disk is full (or over quota)."""
