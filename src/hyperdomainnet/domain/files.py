"""Domains: a trained domain vector (or StyleSpace offset, or a parameterisation's tensors) with the
metadata that makes it self-describing, stored as a domain file (``Domain.save`` / ``Domain.load``).

File layout (see :mod:`hyperdomainnet.fileformat`): one tensor ``vector`` of shape (D,), float32,
and metadata with ``format`` ("hyperdomainnet.domain"), ``version``, ``kind`` ("domain_vector" |
"style_offset"), ``placement`` (for domain vectors), ``domain_layout``, ``generator`` (name,
sha256, arch). Trainers add prompts, reference image, CLIP models, steps, training config and
library version. About 24 KB at 1024 px.

Multi-tensor kinds (the ablation parameterisations, e.g. ``cout_mult``) store their named tensors
(``Domain.tensors``, e.g. ``out.0``, ``out.1``, …) instead of ``vector`` and are written as
version 2; vector kinds are still written as version 1, so older readers keep reading them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import fileformat
from ..errors import ConfigError, FileFormatError
from ..loaders import artefact_path
from ..stylegan2.generator import layout_difference

FORMAT = "hyperdomainnet.domain"
FORMAT_VERSION = 2
VECTOR_FORMAT_VERSION = 1
VECTOR_KEY = "vector"
KINDS: tuple[str, ...] = ("domain_vector", "style_offset")  # the vector kinds
REQUIRED_METADATA: tuple[str, ...] = ("kind", "domain_layout", "generator")
WHAT = "domain file"


@dataclass
class Domain:
    """A domain vector (or a multi-tensor kind's ``tensors``) with its metadata.

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
            raise ConfigError(f"a {self.kind} domain changes conv weights, not a vector; render it with "
                              "Parameterization.from_domain_file(domain, G).synthesize(G, ws)")
        if self.kind == "style_offset":
            return {"style_offset": self.vector * scale}
        return {"domain": self.vector * scale, "placement": self.placement}

    def check_generator(self, G: torch.nn.Module) -> None:
        """Raise a one-line error unless ``G`` has this domain's layout."""
        if list(G.domain_layout) != list(self.domain_layout):
            raise ConfigError(f"domain file was made for generator {self.generator.get('name')}, another layout: "
                              f"{layout_difference(self.domain_layout, G.domain_layout)}; pass the generator "
                              "it was trained on (--generator)")

    def _stored_tensors(self) -> tuple[dict[str, torch.Tensor], int]:
        """The tensors to write and the file version their kind needs (FileFormatError if inconsistent)."""
        if self.kind in KINDS:
            if self.vector is None or self.vector.shape != (sum(self.domain_layout),):
                shape = None if self.vector is None else tuple(self.vector.shape)
                raise FileFormatError(f"a {self.kind} needs a vector of shape ({sum(self.domain_layout)},) "
                                      f"matching its layout, got {shape}")
            if VECTOR_KEY in self.tensors:
                raise FileFormatError(f"extra tensors may not be named {VECTOR_KEY!r}")
            # Extra named tensors (e.g. an image domain's reference latent) travel alongside the vector.
            return {VECTOR_KEY: self.vector, **self.tensors}, VECTOR_FORMAT_VERSION
        if self.vector is not None or not self.tensors or VECTOR_KEY in self.tensors:
            raise FileFormatError(f"a {self.kind} domain needs named tensors (other than {VECTOR_KEY!r}) "
                                  "and no vector")
        return dict(self.tensors), FORMAT_VERSION

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this domain atomically as a domain file; returns ``path``."""
        tensors, version = self._stored_tensors()
        meta = {**self.metadata, "kind": self.kind, "placement": self.placement,
                "domain_layout": list(self.domain_layout), "generator": self.generator}
        return fileformat.save(path, {k: v.float() for k, v in tensors.items()}, meta,
                               file_format=FORMAT, version=version)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Domain:
        """Read a domain file (a path or a released domain's zoo name), checking its format marker,
        metadata, shapes and finiteness."""
        path = artefact_path(path, "domain")
        tensors, meta = fileformat.load(path, file_format=FORMAT, max_version=FORMAT_VERSION, what=WHAT,
                                        required=REQUIRED_METADATA)
        kind, layout, generator = meta.pop("kind"), meta.pop("domain_layout"), meta.pop("generator")
        placement = meta.pop("placement", "after_demod")
        if (not isinstance(layout, list) or not all(isinstance(c, int) for c in layout)
                or not isinstance(generator, dict) or not isinstance(kind, str)):
            raise FileFormatError(f"{path} has corrupt metadata (kind, domain_layout or generator of the "
                                  "wrong type); write the file again")
        vector = tensors.pop(VECTOR_KEY, None)
        if kind in KINDS and (vector is None or vector.shape != (sum(layout),)):
            shape = None if vector is None else tuple(vector.shape)
            raise FileFormatError(f"{path} is inconsistent: vector {shape} vs layout total {sum(layout)}")
        if kind not in KINDS and (vector is not None or not tensors):
            raise FileFormatError(f"{path} is inconsistent: a {kind} domain file must hold named tensors "
                                  "and no vector")
        return cls(vector, kind, layout, generator, placement, meta, tensors)


def load_domain(path: str | os.PathLike[str]) -> Domain:
    """Read a domain file (``Domain.load``), e.g. to apply it::

        G = load_generator("ffhq")
        domain = load_domain("runs/pixar/domain.safetensors")
        images = G(torch.randn(4, 512), **domain.synthesis_kwargs(scale=1.0))
    """
    return Domain.load(path)
