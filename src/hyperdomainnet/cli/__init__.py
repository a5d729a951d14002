"""The ``hdn`` command line: one module per command group, registered on import."""
from . import adapt_text, convert, info, models  # noqa: F401  (registers the commands)
from . import adapt_image  # noqa: F401
from . import invert  # noqa: F401
from . import generate  # noqa: F401
from . import evaluate  # noqa: F401
from . import ui  # noqa: F401
from . import hypernet  # noqa: F401
from . import presets  # noqa: F401
from . import selftest  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
