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


class StorageError(HDNError, OSError):
    """A file could not be written: the disk is full (or over quota)."""
