"""What a file or spec is: generator checkpoints, domain files, zoo entries (for ``hdn info``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .domain.files import FORMAT as DOMAIN_FORMAT
from .domain.files import Domain
from .errors import FileFormatError
from .fileformat import read_metadata
from .loaders import load_generator, resolve_zoo_spec
from .stylegan2.generator import Generator
from .stylegan2.loading import RANDOM_PREFIX


def describe_generator(G: Generator) -> dict[str, Any]:
    """Architecture and sizes of a loaded generator."""
    arch = G.arch
    return {
        "kind": "StyleGAN2 generator",
        "name": G.identity.get("name"),
        "sha256": G.identity.get("sha256"),
        "size": arch.size,
        "style_dim": arch.style_dim,
        "mapping_layers": arch.n_mlp,
        "channel_multiplier": arch.channel_multiplier,
        "channel_max": arch.channel_max,
        "conv_clamp": arch.conv_clamp,
        "n_latent": G.n_latent,
        "parameters": sum(p.numel() for p in G.parameters()),
        "domain_size": G.domain_size,
        "domain_layout": " ".join(map(str, G.domain_layout)),
    }


def describe_safetensors(path: Path) -> dict[str, Any]:
    """Metadata of a hyperdomainnet safetensors file (domain file, hypernetwork); a domain file is
    fully checked (``Domain.load``), so a corrupt or non-finite one is reported as an error."""
    meta = read_metadata(path)
    if meta is None:
        raise FileFormatError(f"{path} is a safetensors file without hyperdomainnet metadata; "
                       "expected a domain file or a generator checkpoint")
    if meta.get("format") != DOMAIN_FORMAT:
        return {"kind": meta.get("format", "unknown"), **meta}
    domain = Domain.load(path)
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


def describe_zoo_entry(name: str) -> dict[str, Any]:
    """A zoo entry that has not been downloaded yet."""
    from . import zoo

    entry = zoo.resolve(name)
    return {"kind": "zoo entry (not downloaded; `hdn download` fetches it)", "name": entry.name,
            "format": entry.format, "urls": " ".join(entry.urls), "sha256": entry.sha256,
            "architecture": entry.arch.to_dict(), "sha256_source": entry.sha256_source}


def describe_target(target: str) -> dict[str, Any]:
    """Describe ``target``: a file path, a zoo name, or a ``random:`` spec."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".safetensors":
        return describe_safetensors(path)
    if path.exists() or target.startswith(RANDOM_PREFIX):
        return describe_generator(load_generator(target))
    from . import zoo

    entry = resolve_zoo_spec(target)
    cached = zoo.cached_path(entry.name)
    return describe_generator(load_generator(cached)) if cached else describe_zoo_entry(entry.name)
