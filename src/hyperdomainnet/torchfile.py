"""The one reader of PyTorch ``.pt`` files: ``torch.load(weights_only=True)``, one-line errors.

Every ``.pt`` the project opens (generators, encoders, released checkpoints, run checkpoints) goes
through :func:`read_torch_file`. It reads PyTorch's zip format and its legacy (pre-1.6) format; no
code from the file runs. A caller may allow extra classes (e.g. ``argparse.Namespace``) or accept
named classes as inert :class:`PickledStub` stand-ins that keep only what the pickle passes them.
Its pickles are first replayed with bounded nesting and work (:mod:`hyperdomainnet.pickle_bounds`).
Junk, truncated or unsafe files raise :class:`FileFormatError` naming the file and the fix.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import FileFormatError
from .pickle_bounds import check_pickle_file

__all__ = ["PickledStub", "read_torch_file"]

DETAIL_CHARS = 160


class PickledStub:
    """Inert stand-in for a class named in a pickle; keeps the arguments and state it is given."""

    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stubs(names: Sequence[str]) -> list[tuple[type, str]]:
    """One stand-in class per global name, as (class, full name) pairs for ``safe_globals``."""
    return [(type(n.rsplit(".", 1)[-1], (PickledStub,), {"pickled_name": n}), n) for n in names]


def _detail(exc: BaseException) -> str:
    """The informative line of ``exc`` (torch's weights-only errors bury it under advice)."""
    lines = [ln.strip() for ln in str(exc).split("WeightsUnpickler error:", 1)[-1].splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln]
    line = (named or lines or [""])[0]
    return f"{type(exc).__name__}: {line}"[:DETAIL_CHARS] if line else type(exc).__name__


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals a zip-format checkpoint names beyond torch's safe set; None for legacy or broken files."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - legacy format, truncated or junk: torch.load says which below
        return None


def read_torch_file(path: str | os.PathLike[str], what: str, allowed: Sequence[type] = (),
                    stub: Callable[[str], bool] | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` of the ``what`` at ``path``.

    ``allowed`` classes are rebuilt as themselves; globals for which ``stub(name)`` is true become
    :class:`PickledStub` stand-ins (zip format only: their names are read before loading). Anything
    else, and every unreadable file, is a one-line :class:`FileFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{what} {path} does not exist or is not a file")
    check_pickle_file(path)
    names = _unsafe_globals(path) if stub is not None else None
    stubbed = [n for n in names or [] if stub is not None and stub(n)]
    try:
        with torch.serialization.safe_globals([*allowed, *_stubs(stubbed)]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the weights-only unpickler met a class or function it does not allow
            raise FileFormatError(f"{path} holds Python objects that cannot be loaded safely ({_detail(exc)}); "
                                  f"expected a {what} of tensors and plain values") from None
        raise FileFormatError(f"{path} is not a readable PyTorch checkpoint ({_detail(exc)}); expected a {what}. "
                              "Is it truncated? Download or write it again") from None
    except MemoryError:
        raise FileFormatError(f"{path} needs more memory than is free to read; expected a {what}") from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises anything (KeyError, EOFError, …) on junk
        raise FileFormatError(f"{path} is not a readable PyTorch checkpoint ({_detail(exc)}); expected a {what}. "
                              "Is it truncated? Download or write it again") from None
