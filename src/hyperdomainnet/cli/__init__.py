"""The ``hdn`` command line: one module per command group, registered on import."""
from . import adapt_text, convert, info, models  # noqa: F401  (registers the commands)
from .app import app, main

__all__ = ["app", "main"]
