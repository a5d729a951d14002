"""The pretrained zoo as data: generators, encoders and the released HyperDomainNet models, by name.

The registry is ``hyperdomainnet/data/zoo.yaml``: for each file its sources (tried in order), byte
size, SHA-256 and where that hash comes from (``sha256_provenance``: ``published`` — an independent
published value; ``own-download`` — pinned from a download of ours; ``none`` — not pinned). This
module imports no model code: it names, locates and downloads files. Released models (``member``
set) come with the released archive and are converted by :mod:`hyperdomainnet.loaders`, which
resolves every name at the edge.

Environment: ``HDN_MIRROR`` (an HTTP base URL or a folder holding the zoo's file names) is tried
before the published sources; ``HDN_ZOO`` names a registry file to read instead of the packaged one
(the same format; for organisations with their own copies, and for tests).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .download import download
from .errors import ConfigError, DownloadError
from .hashing import file_identity_sha256

__all__ = ["ZooEntry", "ARCHIVE", "ENV_MIRROR", "ENV_REGISTRY", "PROVENANCES", "resolve", "list_entries",
           "cached_path", "status", "fetch", "sources", "generator_identity", "manifest_path",
           "released_names"]

ARCHIVE = "hyperdomainnet-checkpoints"
RELEASED = "released"
MANIFEST = "manifest.json"
ENV_MIRROR = "HDN_MIRROR"
ENV_REGISTRY = "HDN_ZOO"
#: sha256_provenance → what ``hdn models`` says about the hash.
PROVENANCES: dict[str, str] = {"published": "published", "own-download": "own download", "none": "not pinned"}
KINDS: tuple[str, ...] = ("generator", "encoder", "archive", "domain", "hypernet", "landmarks")


@dataclass(frozen=True)
class ZooEntry:
    """One named file: where to get it, its size and SHA-256 (and their provenance), and what it is."""

    name: str
    file_name: str
    format: str
    urls: tuple[str, ...]
    sha256: str | None
    #: Bytes of the file, or None where no value is known.
    size: int | None
    #: "published", "own-download" or "none" (see :data:`PROVENANCES`).
    sha256_provenance: str
    sha256_source: str
    #: The generator's architecture as plain data (size, n_mlp, channel_multiplier, …).
    arch: dict[str, Any]
    dataset: str
    description: str
    source: str
    license: str
    aliases: tuple[str, ...] = ()
    notes: str = ""
    #: What the file is: one of :data:`KINDS`.
    kind: str = "generator"
    #: For released models: the file inside the archive this model is converted from.
    member: str | None = None

    @property
    def resolution(self) -> int:
        """Image size in pixels of the generator the file belongs to."""
        return int(self.arch["size"])

    def path(self) -> Path:
        """Where the ready-to-load file lives in the cache (it may not exist yet)."""
        return paths.models_dir(create=False) / self.file_name


def _entry(raw: dict[str, Any]) -> ZooEntry:
    entry = ZooEntry(**{**raw, "urls": tuple(raw["urls"]), "aliases": tuple(raw.get("aliases", ()))})
    if entry.kind not in KINDS:
        raise ConfigError(f"zoo entry {entry.name}: unknown kind {entry.kind!r} (one of {', '.join(KINDS)})")
    if entry.sha256_provenance not in PROVENANCES or (entry.sha256 is None) != (entry.sha256_provenance == "none"):
        raise ConfigError(f"zoo entry {entry.name}: sha256 {entry.sha256!r} does not fit its provenance "
                          f"{entry.sha256_provenance!r} (one of {', '.join(PROVENANCES)}; 'none' without a hash)")
    return entry


def _released(archive: ZooEntry, name: str, kind: str, member: str, description: str,
              aliases: tuple[str, ...] = ()) -> ZooEntry:
    """An entry for a model converted from ``member`` of the released archive (the archive is
    verified on download; the converted file has no published digest of its own)."""
    return dataclasses.replace(
        archive, name=name, kind=kind, member=member, description=description, aliases=aliases,
        file_name=f"{RELEASED}/{name}.safetensors", format=f"hdn-{kind}", notes="", sha256=None, size=None,
        sha256_provenance="none", sha256_source=f"none: converted locally from {archive.file_name}",
        source=f"converted on first use from {member} in {archive.file_name} ({archive.source})")


@cache
def _read_registry(location: str) -> tuple[ZooEntry, ...]:
    try:
        text = (Path(location).read_text() if location else
                resources.files("hyperdomainnet").joinpath("data", "zoo.yaml").read_text())
        data = yaml.safe_load(text)
        files = [_entry(raw) for raw in data["entries"] if "member" not in raw]
        archive = next(e for e in files if e.name == ARCHIVE)
        return (*files, *(_released(archive, r["name"], r["kind"], r["member"], r["description"],
                                    tuple(r.get("aliases", ()))) for r in data["entries"] if "member" in r))
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
        raise ConfigError(f"cannot read the zoo registry {location or 'zoo.yaml'} ({type(exc).__name__}: {exc}); "
                          f"unset {ENV_REGISTRY} or fix the file") from None


def _registry() -> tuple[ZooEntry, ...]:
    """The registry: ``$HDN_ZOO`` when set, else the packaged ``zoo.yaml``."""
    return _read_registry(os.environ.get(ENV_REGISTRY, "").strip())


def manifest_path() -> Path:
    """The list of models converted from the released archive (a cache: rebuilt when unreadable)."""
    return paths.models_dir(create=False) / RELEASED / MANIFEST


def read_manifest() -> list[dict[str, Any]] | None:
    """The converted models' records, or None when there is no readable manifest."""
    try:
        records = json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(records, list) and all(isinstance(r, dict) and {"name", "kind", "member", "description"}
                                           <= r.keys() for r in records)
    return records if ok else None


def _manifest_entries() -> list[ZooEntry]:
    """Released models found in the unpacked archive beyond those the registry names."""
    registry = _registry()
    archive = next(e for e in registry if e.name == ARCHIVE)
    known = {e.name for e in registry}
    return [_released(archive, str(r["name"]), str(r["kind"]), str(r["member"]), str(r["description"]))
            for r in read_manifest() or [] if r["name"] not in known]


def list_entries() -> list[ZooEntry]:
    """All entries: the registry (released models included), then extra models of an unpacked archive."""
    return [*_registry(), *_manifest_entries()]


def released_names() -> dict[str, str]:
    """{archive member's file name: zoo name} for the released models the registry names."""
    return {Path(e.member).name: e.name for e in _registry() if e.member}


def _key(text: str) -> str:
    key = text.strip().lower().replace("_", "-")
    return key.rsplit(".", 1)[0] if key.endswith((".pt", ".pkl", ".zip", ".safetensors", ".dat")) else key


def resolve(name: str | ZooEntry) -> ZooEntry:
    """The entry for a name, alias or file name (case-insensitive; ``_`` and ``-`` alike)."""
    if isinstance(name, ZooEntry):
        return name
    key = _key(str(name))
    for entry in list_entries():
        if key in {_key(entry.name), _key(Path(entry.file_name).name), *map(_key, entry.aliases)}:
            return entry
    raise ConfigError(f"unknown zoo name {name!r}; `hdn models` lists the known names")


def status(name: str | ZooEntry) -> str:
    """"downloaded", "not downloaded", "corrupt" (present but not the pinned bytes) or, for a released
    model before the archive is unpacked, "comes with <archive>". No network."""
    entry = resolve(name)
    if not entry.path().is_file():
        return f"comes with {ARCHIVE}" if entry.member and read_manifest() is None else "not downloaded"
    if entry.sha256 is not None and file_identity_sha256(entry.path()) != entry.sha256:
        return "corrupt"
    return "downloaded"


def cached_path(name: str | ZooEntry) -> Path | None:
    """The cached, verified file for ``name``, else None. No network."""
    entry = resolve(name)
    return entry.path() if status(entry) == "downloaded" else None


def sources(entry: ZooEntry) -> list[str]:
    """Where to get ``entry``'s file, in order: ``$HDN_MIRROR/<file name>`` when set, then its URLs."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return list(entry.urls)
    if mirror.startswith(("http://", "https://")):
        return [f"{mirror.rstrip('/')}/{entry.file_name}", *entry.urls]
    return [str(Path(mirror).expanduser() / entry.file_name), *entry.urls]


def fetch(name: str | ZooEntry) -> Path:
    """Local path of the downloaded, verified file of a non-released entry (downloaded on first use).

    A cached file that does not match its pinned SHA-256 is never replaced silently: that raises
    :class:`DownloadError` saying to delete it. Released models are fetched by
    :func:`hyperdomainnet.loaders.fetch`, which converts them.
    """
    entry = resolve(name)
    if entry.member is not None:
        raise ConfigError(f"{entry.name} is converted from {ARCHIVE}; fetch it with hyperdomainnet.loaders.fetch")
    state = status(entry)
    if state == "corrupt":
        raise DownloadError(f"{entry.path()} is not {entry.name} (its SHA-256 differs from the pinned "
                            "one); delete it to download again, or pass your own file by path")
    if state == "downloaded":
        return entry.path()
    return download(sources(entry), entry.path(), entry.sha256, entry.name, size=entry.size,
                    hint=f"set {ENV_MIRROR} to a folder or URL holding {entry.file_name}")


def generator_identity(file_name: str) -> dict[str, Any] | None:
    """The identity (name, sha256, arch) of the zoo generator whose file is ``file_name``, else None."""
    try:
        entry = resolve(Path(file_name).name)
    except ConfigError:
        return None
    if entry.kind != "generator":
        return None
    return {"name": entry.name, "sha256": entry.sha256, "arch": dict(entry.arch)}
