"""The project's one progress bar (tqdm on stderr): shown on a terminal, quiet otherwise."""
from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def interactive() -> bool:
    """True when stderr is a terminal (progress bars are drawn only then)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar labelled ``desc``; disabled unless ``enabled`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and interactive()),
                dynamic_ncols=True, file=sys.stderr, **kwargs)
