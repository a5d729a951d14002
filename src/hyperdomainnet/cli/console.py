"""What the command line shows besides results: the grids' caption switch, and warnings — every
Python warning and every library log record of level WARNING or above (open_clip logs through the
root logger, which would print ``ERROR:root:…``) becomes one ``warning: …`` line on stderr,
without source paths, once."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import typer

MAX_CHARS = 300
CAPTIONS = typer.Option(True, "--captions/--no-captions",
                        help="Caption bands on grids: row names (source, each domain's prompt or name) and column "
                             "headers (photo | reconstruction | domain).")


def warning_line(message: object) -> str:
    """``warning: <message>`` on one line (whitespace collapsed, cut at ``MAX_CHARS``)."""
    text = " ".join(str(message).split())
    return f"warning: {text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + '…'}"


class _Printer(logging.Handler):
    """Prints each distinct warning line once."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.printed: set[str] = set()

    def show(self, message: object) -> None:
        line = warning_line(message)
        if line not in self.printed:
            self.printed.add(line)
            typer.echo(line, err=True)

    def emit(self, record: logging.LogRecord) -> None:
        self.show(record.getMessage())

    def showwarning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        self.show(message)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Inside: Python warnings and log records ≥ WARNING print as ``warning:`` lines (restored after)."""
    printer = _Printer()
    root = logging.getLogger()
    saved = warnings.showwarning
    root.addHandler(printer)  # with a handler there, logging.error() adds no "ERROR:root:" one of its own
    warnings.showwarning = printer.showwarning
    try:
        yield
    finally:
        warnings.showwarning = saved
        root.removeHandler(printer)
