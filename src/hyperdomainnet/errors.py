"""User-facing errors: one line that names the problem and the fix."""
from __future__ import annotations


class HDNError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line and exits 1."""
