"""What a file or spec is: generator checkpoints, domain files, hypernetworks, zoo entries (for ``hdn info``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .domain.files import FORMAT as DOMAIN_FORMAT
from .domain.files import Domain
from .errors import FileFormatError
from .fileformat import read_metadata
from .filekind import PICKLE, SAFETENSORS, ZIP, looks_like
from .hypernet.model import FORMAT as HYPERNET_FORMAT
from .loaders import load_generator, resolve_zoo_spec
from .stylegan2.generator import Generator
from .stylegan2.loading import RANDOM_PREFIX

INFO_READS = "generator checkpoint (.pt, .pkl), or a domain file, HyperDomainNet or latent (.safetensors)"


def describe_generator(G: Generator) -> dict[str, Any]:
    """Architecture and sizes of a loaded generator."""
    arch = G.arch
    if getattr(G, "family", "stylegan2") == "stylegan3":
        channels = {"kind": f"StyleGAN3-{arch.config.upper()} generator",
                    "channel_base": arch.resolved("channel_base"), "channel_max": arch.resolved("channel_max")}
    else:
        channels = {"kind": "StyleGAN2 generator", "channel_multiplier": arch.channel_multiplier,
                    "channel_max": arch.channel_max}
    return {
        "kind": channels.pop("kind"),
        "name": G.identity.get("name"),
        "sha256": G.identity.get("sha256"),
        "size": arch.size,
        "style_dim": arch.style_dim,
        "mapping_layers": arch.n_mlp,
        **channels,
        "conv_clamp": arch.conv_clamp,
        "n_latent": G.n_latent,
        "parameters": sum(p.numel() for p in G.parameters()),
        "domain_size": G.domain_size,
        "domain_layout": " ".join(map(str, G.domain_layout)),
    }


def describe_safetensors(path: Path) -> dict[str, Any]:
    """Metadata of a hyperdomainnet safetensors file; a domain file or hypernetwork is fully checked
    (``Domain.load`` / ``HyperDomainNet.load``), so a corrupt or non-finite one is reported as an error."""
    meta = read_metadata(path, INFO_READS)
    if meta is None:
        raise FileFormatError(f"{path} is a safetensors file without hyperdomainnet metadata; "
                              "expected a domain file, a hypernetwork or a generator checkpoint")
    if meta.get("format") == DOMAIN_FORMAT:
        return describe_domain(Domain.load(path))
    if meta.get("format") == HYPERNET_FORMAT:
        return describe_hypernet(path)
    return {"kind": meta.get("format", "unknown"), **meta}


def describe_domain(domain: Domain) -> dict[str, Any]:
    """Kind, size, norm and metadata of a domain."""
    tensors = [domain.vector] if domain.vector is not None else list(domain.tensors.values())
    placement = {"domain_vector": domain.placement, "style_offset": "styles (s + Δs)"}
    return {
        "kind": f"domain file ({domain.kind})",
        "placement": placement.get(domain.kind, "conv weights"),
        "numbers": sum(t.numel() for t in tensors),
        "layers": len(domain.domain_layout),
        "norm": round(float(torch.cat([t.reshape(-1) for t in tensors]).norm()), 6),
        "generator": domain.generator,
        **domain.metadata,
    }


def describe_hypernet(path: Path) -> dict[str, Any]:
    """Input, architecture and metadata of a HyperDomainNet file."""
    from .hypernet import HyperDomainNet

    net = HyperDomainNet.load(path)
    return {
        "kind": f"HyperDomainNet ({net.metadata.get('input')} embedding → domain vector)",
        "domain_size": net.domain_size,
        "layers": len(net.domain_layout),
        "parameters": sum(p.numel() for p in net.parameters()),
        **{k: v for k, v in net.architecture.items() if k != "domain_layout"},
        **net.metadata,
    }


def describe_zoo_entry(name: str) -> dict[str, Any]:
    """A zoo entry as registered (before download, or of a kind ``hdn info`` does not open)."""
    from . import zoo

    entry, state = zoo.resolve(name), zoo.status(name)
    hint = "" if state == "downloaded" else f"; `hdn download {entry.name}` fetches it"
    return {"kind": f"zoo {entry.kind} ({state}{hint})",
            "name": entry.name, "format": entry.format, "urls": " ".join(entry.urls), "sha256": entry.sha256,
            "architecture": dict(entry.arch), "sha256_source": entry.sha256_source}


def describe_target(target: str) -> dict[str, Any]:
    """Describe ``target``: a file path, a zoo name (generator, released domain or hypernetwork),
    or a ``random:`` spec. A path to a missing file says so."""
    path = Path(target).expanduser()
    if path.is_file():
        kind = looks_like(path)
        if kind == SAFETENSORS or path.suffix == ".safetensors":
            return describe_safetensors(path)
        if kind not in (ZIP, PICKLE):
            raise FileFormatError(f"{path} is {kind}; hdn info describes a {INFO_READS}")
    if path.exists() or target.startswith(RANDOM_PREFIX):
        return describe_generator(load_generator(target))
    if len(path.parts) > 1:
        raise FileFormatError(f"{target} does not exist; check the path")
    from . import zoo

    entry = resolve_zoo_spec(target)
    cached = zoo.cached_path(entry)
    if cached is None or entry.kind not in ("generator", "domain", "hypernet"):
        return describe_zoo_entry(entry.name)
    return describe_generator(load_generator(cached)) if entry.kind == "generator" else describe_safetensors(cached)
