"""Domain lists for HyperDomainNet: "Target - Source" text lists and reference-image lists.

A text domain list has one domain per line, ``<target description> - <source description>``
(the last `` - `` separates them, so a target may itself contain one), e.g.
``Watercolor Painting - Photo``. Blank lines and lines starting with ``#`` are ignored; a
repeated line counts once; one target with two different sources is an error. A spec names a
file or one of the lists shipped in ``hyperdomainnet/data`` (:data:`BUILTIN_LISTS`).

An image list has one image path per line (relative paths are relative to the list file).

A list's SHA-256 (:func:`list_sha256`) is taken over its canonical lines in order — the order
matters because training draws domains by index — and is recorded in the hypernetwork file.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import HDNError

SEPARATOR = " - "
BUILTIN_LISTS: dict[str, str] = {
    "train-20": "10 styles from 'Photo' and 10 characters from 'Human' (the paper's 20-domain setting)",
    "train-large": "1,000+ combinatorial styles, media and artists from 'Photo'",
    "test-close": "held-out prompts close to the training styles and characters",
    "test-far": "held-out prompts far from the training domains",
}


@dataclass(frozen=True)
class DomainPair:
    """One text domain: the description of the new domain and of the generator's domain."""

    target: str
    source: str

    @property
    def line(self) -> str:
        return f"{self.target}{SEPARATOR}{self.source}"


@dataclass(frozen=True)
class DomainList:
    """A parsed, non-empty, de-duplicated list of domains with the name it was loaded by."""

    name: str
    pairs: tuple[DomainPair, ...]

    @property
    def targets(self) -> list[str]:
        return [p.target for p in self.pairs]

    @property
    def sources(self) -> list[str]:
        """The distinct source descriptions, in order of first use."""
        return list(dict.fromkeys(p.source for p in self.pairs))

    @property
    def sha256(self) -> str:
        return list_sha256(p.line for p in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def list_sha256(lines: Iterable[str]) -> str:
    """SHA-256 (hex) of the lines joined with newlines, each newline-terminated."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the lines that are neither blank nor ``#`` comments."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]


def parse_domain_list(text: str, name: str = "<text>") -> DomainList:
    """Parse "Target - Source" lines (module docstring); one-line HDNError on malformed input."""
    pairs: dict[str, DomainPair] = {}
    for number, line in _content_lines(text):
        target, sep, source = (part.strip() for part in line.rpartition(SEPARATOR))
        if not sep or not target or not source:
            raise HDNError(f"{name} line {number}: {line[:60]!r} is not 'Target - Source' "
                           "(e.g. 'Watercolor Painting - Photo')")
        if target.lower() == source.lower():
            raise HDNError(f"{name} line {number}: target and source are both {target!r}; the text "
                           "direction would be zero")
        known = pairs.get(target)
        if known is not None and known.source != source:
            raise HDNError(f"{name} line {number}: {target!r} is listed with two sources "
                           f"({known.source!r} and {source!r}); keep one")
        pairs.setdefault(target, DomainPair(target, source))
    if not pairs:
        raise HDNError(f"domain list {name} has no domains; write one 'Target - Source' line per domain")
    return DomainList(name, tuple(pairs.values()))


def builtin_path(name: str) -> Path:
    """The shipped file of a built-in list (see :data:`BUILTIN_LISTS`)."""
    return Path(str(resources.files("hyperdomainnet").joinpath("data", f"{name}.txt")))


def load_domain_list(spec: str | Path) -> DomainList:
    """A domain list from a file path or a built-in list name."""
    path = Path(spec).expanduser()
    if str(spec) in BUILTIN_LISTS and not path.exists():
        return parse_domain_list(builtin_path(str(spec)).read_text(encoding="utf-8"), str(spec))
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "is neither a file nor a built-in list"
        raise HDNError(f"domain list {spec!r} {what}; pass a 'Target - Source' text file or one of "
                       f"{', '.join(BUILTIN_LISTS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HDNError(f"cannot read domain list {path} ({type(exc).__name__}); pass a UTF-8 text file") from None
    return parse_domain_list(text, str(path))


def load_image_list(path: str | Path) -> list[Path]:
    """Image paths listed one per line in a text file (relative to its folder); they must exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HDNError(f"image list {path} is not a file; pass a text file with one image path per line")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HDNError(f"cannot read image list {path} ({type(exc).__name__}); pass a UTF-8 text file") from None
    images = list(dict.fromkeys((path.parent / Path(line).expanduser()).resolve()
                                for _, line in _content_lines(text)))
    if not images:
        raise HDNError(f"image list {path} names no images; write one image path per line")
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise HDNError(f"image list {path}: {missing[0]} does not exist"
                       f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; fix the paths")
    return images
