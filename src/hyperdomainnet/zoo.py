"""The pretrained zoo: generators, encoders and the released HyperDomainNet models, by name.

The registry is ``hyperdomainnet/data/zoo.yaml`` (sources, SHA-256 and where each hash comes from).
:func:`fetch` returns the local path of the ready-to-load file, downloading and verifying it into
:func:`hyperdomainnet.paths.models_dir` on first use; afterwards no network is touched.

Released models (``member`` set) are converted on first use: the archive is fetched once, each model
in it becomes our domain or hypernetwork file in ``models_dir()/released/``, listed by a manifest.
"""
from __future__ import annotations

import dataclasses
import json
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
from .stylegan2.generator import GeneratorArch
from .stylegan3.generator import StyleGAN3Arch, arch_from_dict

__all__ = ["ZooEntry", "ARCHIVE", "resolve", "list_entries", "cached_path", "status", "fetch", "local_path"]

ARCHIVE = "hyperdomainnet-checkpoints"
RELEASED = "released"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ZooEntry:
    """One named file: where to get it, its SHA-256 and what it is."""

    name: str
    file_name: str
    format: str
    urls: tuple[str, ...]
    sha256: str | None
    arch: GeneratorArch | StyleGAN3Arch
    dataset: str
    description: str
    source: str
    license: str
    sha256_source: str
    #: True when ``sha256`` is a value published for this file; False when none exists.
    sha256_verified: bool
    aliases: tuple[str, ...] = ()
    notes: str = ""
    #: What the file is: "generator", "encoder", "archive", "domain" or "hypernet".
    kind: str = "generator"
    #: For released models: the file inside the archive this model is converted from.
    member: str | None = None

    def path(self) -> Path:
        """Where the ready-to-load file lives in the cache (it may not exist yet)."""
        return paths.models_dir(create=False) / self.file_name


def _entry(raw: dict[str, Any]) -> ZooEntry:
    return ZooEntry(**{**raw, "urls": tuple(raw["urls"]), "aliases": tuple(raw.get("aliases", ())),
                       "arch": arch_from_dict(raw["arch"])})


def _released(archive: ZooEntry, name: str, kind: str, member: str, description: str,
              aliases: tuple[str, ...] = ()) -> ZooEntry:
    """An entry for a model converted from ``member`` of the released archive (the archive's digest,
    if any, is checked on download; the converted file has none to compare with)."""
    return dataclasses.replace(
        archive, name=name, kind=kind, member=member, description=description, aliases=aliases,
        file_name=f"{RELEASED}/{name}.safetensors", format=f"hdn-{kind}", notes="", sha256=None,
        sha256_verified=False, sha256_source=f"none: converted locally from {archive.file_name}",
        source=f"converted on first use from {member} in {archive.file_name} ({archive.source})")


@cache
def _registry() -> tuple[ZooEntry, ...]:
    data = yaml.safe_load(resources.files("hyperdomainnet").joinpath("data", "zoo.yaml").read_text())
    files = [_entry(raw) for raw in data["entries"] if "member" not in raw]
    archive = next(e for e in files if e.name == ARCHIVE)
    return (*files, *(_released(archive, r["name"], r["kind"], r["member"], r["description"],
                                tuple(r.get("aliases", ()))) for r in data["entries"] if "member" in r))


def _manifest_entries() -> list[ZooEntry]:
    """Released models listed by the manifest of an unpacked archive (none before first use)."""
    manifest = paths.models_dir(create=False) / RELEASED / MANIFEST
    if not manifest.is_file():
        return []
    registry = _registry()
    archive = next(e for e in registry if e.name == ARCHIVE)
    return [_released(archive, r["name"], r["kind"], r["member"], r["description"])
            for r in json.loads(manifest.read_text()) if r["name"] not in {e.name for e in registry}]


def list_entries() -> list[ZooEntry]:
    """All entries: the registry, then the released domains of an unpacked archive."""
    return [*_registry(), *_manifest_entries()]


def _key(text: str) -> str:
    key = text.strip().lower().replace("_", "-")
    return key.rsplit(".", 1)[0] if key.endswith((".pt", ".pkl", ".zip", ".safetensors")) else key


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
    """"downloaded", "not downloaded" or "corrupt" (present but not the published bytes). No network."""
    entry = resolve(name)
    if not entry.path().is_file():
        return "not downloaded"
    if entry.sha256 is not None and file_identity_sha256(entry.path()) != entry.sha256:
        return "corrupt"
    return "downloaded"


def cached_path(name: str | ZooEntry) -> Path | None:
    """The cached, verified file for ``name``, else None. No network."""
    entry = resolve(name)
    return entry.path() if status(entry) == "downloaded" else None


def fetch(name: str | ZooEntry) -> Path:
    """Local path of the ready-to-load file for ``name``, downloading (and converting) it if needed.

    A file in the cache that does not match its published SHA-256 is never replaced silently: that
    raises :class:`DownloadError` saying to delete it.
    """
    entry = resolve(name)
    state = status(entry)
    if state == "corrupt":
        raise DownloadError(f"{entry.path()} is not {entry.name} (its SHA-256 differs from the published "
                            "one); delete it to download again, or pass your own file by path")
    if state == "downloaded":
        return entry.path()
    if entry.member is None:
        return download(entry.urls, entry.path(), entry.sha256, entry.name)
    from .released import convert_archive

    archive, manifest = fetch(ARCHIVE), entry.path().parent / MANIFEST
    if not manifest.is_file() or entry.name in {r["name"] for r in json.loads(manifest.read_text())}:
        convert_archive(archive, manifest, {e.member: e.name for e in _registry() if e.member})
    if not entry.path().is_file():
        raise DownloadError(f"{archive} holds no convertible {entry.member}; delete it to download the archive again")
    return entry.path()


def local_path(spec: str | Path, kind: str) -> Path:
    """``spec`` itself when it is an existing path, else :func:`fetch` of the zoo entry it names,
    which must be of ``kind`` ("generator", "encoder", "domain" or "hypernet")."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    try:
        entry = resolve(str(spec))
    except ConfigError:
        raise ConfigError(f"{spec} is neither an existing file nor a zoo name; `hdn models` lists the names") from None
    if entry.kind != kind:
        raise ConfigError(f"{spec} is a zoo {entry.kind}, not a {kind}; pass a {kind} file or name (`hdn models`)")
    return fetch(entry)
