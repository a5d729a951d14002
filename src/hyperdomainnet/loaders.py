"""The edge where names become files: generators, domains and hypernetworks by path, spec or zoo name.

Everything below this module takes paths (``Domain.load``, ``HyperDomainNet.load``, the generator
package); the registry (:mod:`hyperdomainnet.zoo`) imports no model code. Here a zoo name is
resolved once: files are downloaded and verified by the zoo, released models are converted from the
released archive (:mod:`hyperdomainnet.released`) with the identity of the generator they were
trained on, taken from the registry.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import zoo
from .domain.files import Domain
from .errors import ConfigError, DownloadError, HDNError
from .hypernet.model import HyperDomainNet
from .released import convert_archive
from .stylegan2.generator import Generator
from .stylegan2.loading import RANDOM_PREFIX, load_local_generator

__all__ = ["fetch", "artefact_path", "resolve_zoo_spec", "load_generator", "load_domain", "load_hypernet"]


def fetch(name: str | zoo.ZooEntry) -> Path:
    """Local path of the ready-to-load file for zoo ``name``: downloaded and verified, and for a
    released model converted from the released archive on first use."""
    entry = zoo.resolve(name)
    if entry.member is None:
        return zoo.fetch(entry)
    records = zoo.read_manifest()  # a cache of the conversion: rebuilt when missing or unreadable
    if records is not None and zoo.status(entry) == "downloaded":
        return entry.path()
    archive = zoo.fetch(zoo.ARCHIVE)
    if records is None or entry.name in {r["name"] for r in records}:  # no manifest, or its file was removed
        convert_archive(archive, zoo.manifest_path(), zoo.released_names(), zoo.generator_identity)
    if not entry.path().is_file():
        raise DownloadError(f"{archive} holds no convertible {entry.member}; delete it to download the archive again")
    return entry.path()


def resolve_zoo_spec(spec: str) -> zoo.ZooEntry:
    """The zoo entry a non-file, non-random spec names, or a one-line error listing the options."""
    try:
        return zoo.resolve(spec)
    except HDNError as exc:
        raise ConfigError(f"generator {spec!r} is not an existing file nor a random:<size> spec, "
                          f"and {exc}") from None


def artefact_path(spec: str | os.PathLike[str], kind: str) -> Path:
    """The file ``spec`` names: itself when it exists or looks like a path (so a missing file keeps
    its own error), else the zoo's ``kind`` entry of that name, fetched once (``hdn models``)."""
    path = Path(spec).expanduser()
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    try:
        entry = zoo.resolve(str(spec))
    except ConfigError:
        raise ConfigError(f"{spec} is neither an existing file nor a zoo name; `hdn models` lists the names") from None
    if entry.kind != kind:
        raise ConfigError(f"{spec} is a zoo {entry.kind}, not a {kind}; pass a {kind} file or name (`hdn models`)")
    return fetch(entry)


def load_generator(spec: str | os.PathLike[str], device: str | torch.device = "cpu") -> Generator:
    """Load a frozen eval-mode generator from a file, a ``random:`` spec or a zoo name."""
    spec_str = str(spec)
    if spec_str.startswith(RANDOM_PREFIX) or Path(spec_str).expanduser().exists():
        return load_local_generator(spec_str, device)
    entry = resolve_zoo_spec(spec_str)
    return load_local_generator(artefact_path(entry.name, "generator"), device, name=entry.name)


def load_domain(spec: str | os.PathLike[str]) -> Domain:
    """A domain from a file or a released domain's zoo name (``td-pixar``, ``im2im-sketch``), e.g.::

        G = load_generator("ffhq")
        domain = load_domain("im2im-sketch")           # or "runs/pixar/domain.safetensors"
        ws = domain.mix(G.ws(torch.randn(4, 512), truncation=0.7))  # image domains: style mixing
        images = G.synthesis(ws, **domain.synthesis_kwargs())
    """
    return Domain.load(artefact_path(spec, "domain"))


def load_hypernet(spec: str | os.PathLike[str], device: str | torch.device = "cpu") -> HyperDomainNet:
    """A HyperDomainNet from a file or a released model's zoo name (``hdn-large``), on ``device``."""
    return HyperDomainNet.load(artefact_path(spec, "hypernet"), device)
