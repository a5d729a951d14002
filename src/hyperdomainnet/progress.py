"""The project's one progress bar: tqdm on stderr. On a terminal it is drawn as usual; off one (a
log, a pipe, a batch job) long work prints its status as one plain line every ``LOG_PERIOD_S``
seconds (quick work prints nothing) and a last line when it ends."""
from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from tqdm.auto import tqdm

LOG_PERIOD_S = 30.0
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def interactive() -> bool:
    """True when stderr is a terminal (progress bars are drawn only then)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _Lines:
    """A file for tqdm that passes its status on as one line, only while ``open``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.open, self.printed = stream, False, False

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if self.open and line:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.printed = True

    def flush(self) -> None:
        pass


class LogProgress(tqdm):
    """tqdm off a terminal: a status line every ``LOG_PERIOD_S`` seconds from a background thread
    (whether or not the count moved), the first after one period, and a last line on ``close``
    when any was printed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lines = _Lines(sys.stderr)
        if kwargs.get("total") is not None:
            kwargs.setdefault("bar_format", LOG_FORMAT)
        super().__init__(*args, file=self._lines, mininterval=float("inf"), **kwargs)
        self._stop = threading.Event()
        threading.Thread(target=self._beat, name="progress line", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(LOG_PERIOD_S):
            self._print_line()

    def _print_line(self) -> None:
        self._lines.open = True
        try:
            self.refresh()
        finally:
            self._lines.open = False

    def close(self) -> None:
        if not getattr(self, "_stop", threading.Event()).is_set():
            self._stop.set()
            if self._lines.printed:
                self._print_line()
        super().close()


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar labelled ``desc`` on stderr when ``enabled``: drawn on a terminal, else a
    :class:`LogProgress` (a status line every ``LOG_PERIOD_S`` seconds of long work)."""
    if enabled and not interactive():
        return LogProgress(total=total, desc=desc, unit=unit, **kwargs)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                **kwargs)
