"""Bounds on what a pickle may build, checked by reading its opcodes before anything is unpickled.

A pickle can share one object many times through its memo: ``t1 = (t0, t0)``, ``t2 = (t1, t1)``,
… is a few hundred bytes for 60 levels, yet hashing ``t60`` (as a dict key, in a set) or
comparing it walks 2^60 nodes. ``check_pickle`` replays the opcodes on a stack of inert nodes,
each carrying the size its object would have with every shared reference expanded and its
nesting depth, and refuses a pickle whose objects exceed ``MAX_EXPANDED`` nodes or
``MAX_DEPTH`` levels — far above what a checkpoint's dicts of tensors need, far below a hang.
"""
from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import FileFormatError

MAX_EXPANDED = 10_000_000
MAX_DEPTH = 200
#: PyTorch's legacy format starts with four pickles (magic, protocol, system info, the data).
LEGACY_PICKLES = 4
#: Opcodes that add to the container below their arguments (the container stays on the stack).
MUTATING = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
#: Opcodes that leave the object on top of the stack as it is.
SAME_OBJECT = frozenset({"MEMOIZE", "READONLY_BUFFER"})


@dataclass
class _Node:
    """An object on the replayed stack: its expanded size (nodes) and nesting depth."""

    size: int = 1
    depth: int = 1


_MARK = _Node(0, 0)


def _pop(stack: list[_Node], op: pickletools.OpcodeInfo) -> list[_Node]:
    """Pop the operands ``op`` consumes (up to and including a mark for a stack slice)."""
    names = [s.name for s in op.stack_before]
    popped: list[_Node] = []
    if "stackslice" in names:
        while stack and stack[-1] is not _MARK:
            popped.append(stack.pop())
        if not stack:
            raise ValueError("stack slice without a mark")
        stack.pop()
        names = names[:names.index("mark")]
    for _ in names:
        popped.append(stack.pop())
    return popped


def _replay(stream: IO[bytes], source: str) -> None:
    """Replay one pickle (up to its STOP) from ``stream``; FileFormatError when it exceeds the bounds."""
    stack: list[_Node] = []
    memo: dict[int, _Node] = {}
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
            continue
        if op.name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
            continue
        if op.name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
            continue
        if op.name == "DUP":
            stack.append(stack[-1])
            continue
        if op.name in SAME_OBJECT:
            continue
        popped = _pop(stack, op)
        if op.name in MUTATING:
            container, items = popped[-1], popped[:-1]
            container.size += sum(n.size for n in items)
            container.depth = max([container.depth, *(n.depth + 1 for n in items)])
            node = container
            stack.append(container)
        else:
            node = _Node(1 + sum(n.size for n in popped), 1 + max((n.depth for n in popped), default=0))
            stack.extend(_MARK if s.name == "mark" else node for s in op.stack_after)
        if node.depth > MAX_DEPTH:
            raise FileFormatError(f"{source} nests objects over {MAX_DEPTH} levels deep; refused: it is not "
                                  "a checkpoint")
        if node.size > MAX_EXPANDED:
            raise FileFormatError(f"{source} builds an object of over {MAX_EXPANDED:,} parts once its shared "
                                  "references are expanded; refused: it is not a checkpoint")


def check_pickle(stream: IO[bytes], source: str) -> None:
    """Refuse (one-line FileFormatError) a pickle whose objects nest too deep or expand too far;
    damaged streams are left for the unpickler to report."""
    try:
        _replay(stream, source)
    except FileFormatError:
        raise
    except (ValueError, KeyError, IndexError, EOFError):  # damaged: the unpickler says so
        return


def check_legacy(stream: IO[bytes], source: str) -> None:
    """``check_pickle`` on the leading pickles of PyTorch's legacy format (or a single pickle)."""
    for _ in range(LEGACY_PICKLES):
        check_pickle(stream, source)


def check_pickle_file(path: str | Path) -> None:
    """``check_pickle`` on the pickles of a file: a ``.pkl``, the ``data.pkl`` of a PyTorch zip
    checkpoint, or the leading pickles of PyTorch's legacy format (files that cannot be read are
    left for the reader to report)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith("data.pkl"):
                        with archive.open(name) as fh:
                            check_pickle(fh, f"{path} ({name})")
            return
        with open(path, "rb") as fh:
            check_legacy(fh, str(path))
    except (OSError, zipfile.BadZipFile):  # unreadable: the reader says so
        return
