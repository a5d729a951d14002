"""Domain lists for HyperDomainNet: "Target - Source" text lists and reference-image lists.

A text domain list has one domain per line, ``<target description> - <source description>``
(the last `` - `` separates them, so a target may itself contain one), e.g.
``Watercolor Painting - Photo``. Blank lines and lines starting with ``#`` are ignored; a
repeated line counts once; one target with two different sources is an error. A spec names a
file, one of our lists shipped in ``hyperdomainnet/data`` (:data:`BUILTIN_LISTS`), or
``official:<name>``: a list of the research code's ``text_domains/`` folder (:data:`OFFICIAL_LISTS`),
downloaded once from MACderRu/HyperDomainNet at a pinned commit, SHA-256 verified and cached.

An image list has one image path per line (relative paths are relative to the list file).

A list's SHA-256 (:func:`list_sha256`) is taken over its canonical lines in order — the order
matters because training draws domains by index — and is recorded in the hypernetwork file.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import paths
from ..download import download
from ..errors import ConfigError, DownloadError, FileFormatError
from ..hashing import file_identity_sha256

SEPARATOR = " - "
BUILTIN_LISTS: dict[str, str] = {
    "train-20": "our 20 domains: 10 styles from 'Photo' and 10 characters from 'Human' "
                "(not the paper's list; that is official:domain_list_20)",
    "train-large": "our 1,028 combinatorial styles, media and artists from 'Photo' "
                   "(not the paper's large set; see official:train_domains_2000)",
    "test-close": "our held-out prompts close to train-20's styles and characters",
    "test-far": "our held-out prompts far from the training domains",
}
OFFICIAL_PREFIX = "official:"
OFFICIAL_COMMIT = "2986493c6de3aa5840528b398f33e5817e29f4f5"
OFFICIAL_URL = "https://raw.githubusercontent.com/MACderRu/HyperDomainNet/{commit}/text_domains/{name}.txt"
#: The research code's lists (MIT licence) at OFFICIAL_COMMIT: name → SHA-256 of the file there.
OFFICIAL_LISTS: dict[str, str] = {
    "domain_list_20": "238f53f3066758db9911fbdcefb5c101ab78ff5be0823bd7f6b15b5752f84560",
    "train_domains_1000": "537119ab73cfc6d6bff9f8d6a54cee9871952d25404b0e7fbbee0617240d50db",
    "train_domains_1500": "cef90310f4620228a3fb9eeb50bf1bb81ba70e9719aedad17cf6181936eaabb6",
    "train_domains_2000": "838b0f538366e7cbe66ca2b1973d07cdb6cb20b99feb7b4c5a9086a5d7e9c230",
    "close_test_domains_2000": "a3389cfb31f51c242cd239cc98897aeabf0a2cdbd77cb3fb1ca3a29976f97916",
    "far_test_domains_2000": "343005c4584aa6a9fa0e9ca7082e8a3c632ace9ad6170dd536ede6301fc5e147",
    "domain_list_stress": "a1210a8dc59de238a4c91337eccb2be8bff74df0d4a8568d89c6bbd73bc8c82a",
    "domain_list_style": "4657af2df8090dd26832818ce8561e55ffe329a86d3581b3a8a726fdd12d5ab7",
    "domain_list_test": "5ba36ccb6ecf7801824b0923ef00d00d5349294a3680a02237514fd9c530a267",
    "much_domains": "45843376d349e274323a647e050dfe07940ee764674673c44cee331ff24085e7",
    "mixed_content_train_domains": "281e86f28690887e8002e3f2f1659db8867638a64d94ff337c15feea3f9e196c",
    "mixed_launch_content_domains": "a89ba43aea16ea0b60b217a846c8510b7ce9283fc928639ee862bca6a48d17af",
    "mixed_launch_style_domains": "843db34222b361432d48f4e15a68e9467c043ff60d4312a94d7ff69cee04b8d9",
    "mixed_style_train_domains": "2db5f8b809a689674a361ce6dc1bfbc815b94d7fb330f29adf5d8360342149ee",
    "mixed_train_domains": "12fe64ab056d9a804de401b1488b25ba0e79c93541783e7658e6b8e5b16d2c0e",
    "train_synonyms_domains": "58b251514a9f8c8011d99d0b47ce119091000ade689bbbc2a178e505906e1bcf",
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
    """Parse "Target - Source" lines (module docstring); one-line FileFormatError on malformed input."""
    pairs: dict[str, DomainPair] = {}
    for number, line in _content_lines(text):
        target, sep, source = (part.strip() for part in line.rpartition(SEPARATOR))
        if not sep or not target or not source:
            raise FileFormatError(f"{name} line {number}: {line[:60]!r} is not 'Target - Source' "
                                  "(e.g. 'Watercolor Painting - Photo')")
        if target.lower() == source.lower():
            raise FileFormatError(f"{name} line {number}: target and source are both {target!r}; the text "
                                  "direction would be zero")
        known = pairs.get(target)
        if known is not None and known.source != source:
            raise FileFormatError(f"{name} line {number}: {target!r} is listed with two sources "
                                  f"({known.source!r} and {source!r}); keep one")
        pairs.setdefault(target, DomainPair(target, source))
    if not pairs:
        raise FileFormatError(f"domain list {name} has no domains; write one 'Target - Source' line per domain")
    return DomainList(name, tuple(pairs.values()))


def builtin_path(name: str) -> Path:
    """The shipped file of a built-in list (see :data:`BUILTIN_LISTS`)."""
    return Path(str(resources.files("hyperdomainnet").joinpath("data", f"{name}.txt")))


def official_path(name: str) -> Path:
    """The cached, verified file of research-code list ``name``, downloaded on first use."""
    sha256 = OFFICIAL_LISTS.get(name)
    if sha256 is None:
        raise ConfigError(f"{OFFICIAL_PREFIX}{name} is not a list of the research code; known: "
                          f"{', '.join(OFFICIAL_PREFIX + n for n in OFFICIAL_LISTS)}")
    dest = paths.subdir("domain_lists") / f"{name}.txt"
    if not dest.is_file():
        return download([OFFICIAL_URL.format(commit=OFFICIAL_COMMIT, name=name)], dest, sha256,
                        f"{OFFICIAL_PREFIX}{name}")
    if file_identity_sha256(dest) != sha256:
        raise DownloadError(f"{dest} is not the research code's {name}.txt (SHA-256 differs); delete it "
                            "to download again")
    return dest


def _official_list(name: str) -> DomainList:
    """A research-code list; its identity lines ('Photo - Photo', zero text direction) are dropped."""
    lines = _content_lines(official_path(name).read_text(encoding="utf-8"))
    kept = [line for _, line in lines if len({p.strip().lower() for p in line.rpartition(SEPARATOR)[::2]}) > 1]
    if len(kept) < len(lines):
        warnings.warn(f"{OFFICIAL_PREFIX}{name}: dropped {len(lines) - len(kept)} line(s) whose target equals "
                      "the source (zero text direction)", stacklevel=3)
    return parse_domain_list("\n".join(kept), OFFICIAL_PREFIX + name)


def load_domain_list(spec: str | Path) -> DomainList:
    """A domain list from a file path, a built-in list name or ``official:<name>``."""
    path = Path(spec).expanduser()
    if str(spec).startswith(OFFICIAL_PREFIX) and not path.exists():
        return _official_list(str(spec)[len(OFFICIAL_PREFIX):])
    if str(spec) in BUILTIN_LISTS and not path.exists():
        return parse_domain_list(builtin_path(str(spec)).read_text(encoding="utf-8"), str(spec))
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "is neither a file nor a built-in list"
        raise FileFormatError(f"domain list {spec!r} {what}; pass a 'Target - Source' text file, one of "
                              f"{', '.join(BUILTIN_LISTS)}, or {OFFICIAL_PREFIX}<name> (e.g. official:domain_list_20)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read domain list {path} ({type(exc).__name__}); "
                              "pass a UTF-8 text file") from None
    return parse_domain_list(text, str(path))


def load_image_list(path: str | Path) -> list[Path]:
    """Image paths listed one per line in a text file (relative to its folder); they must exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileFormatError(f"image list {path} is not a file; pass a text file with one image path per line")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read image list {path} ({type(exc).__name__}); pass a UTF-8 text file") from None
    images = list(dict.fromkeys((path.parent / Path(line).expanduser()).resolve()
                                for _, line in _content_lines(text)))
    if not images:
        raise FileFormatError(f"image list {path} names no images; write one image path per line")
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise FileFormatError(f"image list {path}: {missing[0]} does not exist"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; fix the paths")
    return images
