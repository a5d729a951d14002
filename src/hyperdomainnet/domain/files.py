"""Domain files: a trained domain vector (or StyleSpace offset) as safetensors + JSON metadata.

Layout: one tensor ``vector`` of shape (D,), float32, and the safetensors metadata entry
``hyperdomainnet`` holding JSON with at least: ``format`` ("hyperdomainnet.domain"), ``version``,
``kind`` ("domain_vector" | "style_offset"), ``placement`` (for domain vectors), ``domain_layout``,
``generator`` (name, sha256, arch). Trainers add prompts, reference image, CLIP models, steps,
training config and library version. About 24 KB at 1024 px.

Multi-tensor kinds (the ablation parameterisations, e.g. ``cout_mult``) store their named tensors
(``DomainFile.tensors``, e.g. ``out.0``, ``out.1``, …) instead of ``vector`` and are written as
version 2; vector kinds are still written as version 1, so older readers keep reading them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from ..atomic import atomic_path
from ..errors import HDNError

FORMAT = "hyperdomainnet.domain"
FORMAT_VERSION = 2
VECTOR_FORMAT_VERSION = 1
META_KEY = "hyperdomainnet"
VECTOR_KEY = "vector"
KINDS: tuple[str, ...] = ("domain_vector", "style_offset")  # the vector kinds


@dataclass
class DomainFile:
    """A domain vector (or a multi-tensor kind's ``tensors``) with the metadata that makes it self-describing.

    ``vector`` is set for the vector kinds (``KINDS``) and None for multi-tensor kinds, whose
    named tensors are in ``tensors``.
    """

    vector: torch.Tensor | None
    kind: str
    domain_layout: list[int]
    generator: dict[str, Any]
    placement: str = "after_demod"
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def synthesis_kwargs(self, scale: float = 1.0) -> dict[str, Any]:
        """Keyword arguments for ``Generator.synthesis`` that apply this domain (scaled by α)."""
        if self.vector is None:
            raise HDNError(f"a {self.kind} domain file changes conv weights, not a vector; render it with "
                           "Parameterization.from_domain_file(domain, G).synthesize(G, ws)")
        if self.kind == "style_offset":
            return {"style_offset": self.vector * scale}
        return {"domain": self.vector * scale, "placement": self.placement}

    def check_generator(self, G: torch.nn.Module) -> None:
        """Raise a one-line error unless ``G`` has this file's domain layout."""
        if list(G.domain_layout) != list(self.domain_layout):
            raise HDNError(f"domain file was made for generator {self.generator.get('name')} with "
                           f"{sum(self.domain_layout)} domain numbers, but the given generator has "
                           f"{G.domain_size}; pass the generator it was trained on (--generator)")


def save_domain_file(path: str | Path, domain: DomainFile) -> Path:
    """Write ``domain`` atomically as safetensors with JSON metadata."""
    if domain.kind in KINDS:
        if domain.vector is None or domain.vector.shape != (sum(domain.domain_layout),):
            shape = None if domain.vector is None else tuple(domain.vector.shape)
            raise ValueError(f"vector shape {shape} does not match the layout")
        if VECTOR_KEY in domain.tensors:
            raise ValueError(f"extra tensors may not be named {VECTOR_KEY!r}")
        # Extra named tensors (e.g. an image domain's reference latent) travel alongside the vector.
        tensors, version = {VECTOR_KEY: domain.vector, **domain.tensors}, VECTOR_FORMAT_VERSION
    else:
        if domain.vector is not None or not domain.tensors or VECTOR_KEY in domain.tensors:
            raise ValueError(f"a {domain.kind} domain file needs named tensors (other than {VECTOR_KEY!r}) "
                             "and no vector")
        tensors, version = domain.tensors, FORMAT_VERSION
    meta = {**domain.metadata, "format": FORMAT, "version": version, "kind": domain.kind,
            "placement": domain.placement, "domain_layout": list(domain.domain_layout),
            "generator": domain.generator}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The hyperdomainnet metadata of a safetensors file, or None if it has none."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise HDNError(f"{path} is not a readable safetensors file ({exc}); is it truncated?") from None
    return None if raw is None else json.loads(raw)


def load_domain_file(path: str | Path) -> DomainFile:
    """Read a domain file, checking its format marker and shapes."""
    path = Path(path)
    if not path.is_file():
        raise HDNError(f"domain file {path} does not exist; pass the domain.safetensors of a training run")
    meta = read_metadata(path)
    if meta is None or meta.get("format") != FORMAT:
        found = "no hyperdomainnet metadata" if meta is None else f"format {meta.get('format')!r}"
        raise HDNError(f"{path} is not a hyperdomainnet domain file ({found})")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise HDNError(f"{path} uses domain-file version {meta['version']}; upgrade hyperdomainnet")
    tensors = load_file(str(path))
    meta = dict(meta)
    kind = meta.pop("kind")
    layout = meta.pop("domain_layout")
    generator = meta.pop("generator")
    placement = meta.pop("placement", "after_demod")
    for key in ("format", "version"):
        meta.pop(key)
    vector = tensors.pop(VECTOR_KEY, None)
    if kind in KINDS and (vector is None or vector.shape != (sum(layout),)):
        shape = None if vector is None else tuple(vector.shape)
        raise HDNError(f"{path} is inconsistent: vector {shape} vs layout total {sum(layout)}")
    if kind not in KINDS and (vector is not None or not tensors):
        raise HDNError(f"{path} is inconsistent: a {kind} domain file must hold named tensors and no vector")
    return DomainFile(vector, kind, layout, generator, placement, meta, tensors)
