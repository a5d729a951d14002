"""Domains: a trained domain vector (or StyleSpace offset, or a parameterisation's tensors) with the
metadata that makes it self-describing, stored as a domain file (``Domain.save`` / ``Domain.load``).

File layout (see :mod:`hyperdomainnet.fileformat`): one tensor ``vector`` of shape (D,), float32,
and metadata with ``format`` ("hyperdomainnet.domain"), ``version``, ``kind`` ("domain_vector" |
"style_offset"), ``placement`` (for domain vectors), ``domain_layout``, ``generator`` (name,
sha256, arch). Trainers add prompts, reference image, CLIP models, steps, training config and
library version. About 24 KB at 1024 px.

A domain made from one image (trained here, or a released ``im2im`` checkpoint) also stores the
reference's W+ codes as the tensor ``reference_latent`` (1, K, D) and its mixing rule as metadata
``style_mixing_from`` (the first W+ layer the reference replaces; 7 for 1024 px, as released).
:meth:`Domain.mix` applies that rule wherever a domain is rendered.

Multi-tensor kinds (the ablation parameterisations, e.g. ``cout_mult``) store their named tensors
(``Domain.tensors``, e.g. ``out.0``, ``out.1``, …) instead of ``vector`` and are written as
version 2; vector kinds are still written as version 1, so older readers keep reading them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import fileformat
from ..errors import ConfigError, FileFormatError
from ..stylegan2.generator import layout_difference
from ..stylegan3.generator import generator_family

FORMAT = "hyperdomainnet.domain"
FORMAT_VERSION = 2
VECTOR_FORMAT_VERSION = 1
VECTOR_KEY = "vector"
KINDS: tuple[str, ...] = ("domain_vector", "style_offset")  # the vector kinds
REQUIRED_METADATA: tuple[str, ...] = ("kind", "domain_layout", "generator")
WHAT = "domain file"
REFERENCE_LATENT = "reference_latent"
MIX_FROM_KEY = "style_mixing_from"
MIX_FROM = 7  # first W+ layer the reference replaces (MindTheGap; the released image domains)


def synthesis_arguments(kind: str, vectors: torch.Tensor, placement: str = "after_demod") -> dict[str, Any]:
    """``Generator.synthesis`` keyword arguments applying a vector kind's change ``vectors``, (D,) or
    per sample (B, D): δ with its placement, or the StyleSpace offset Δs."""
    if kind == "style_offset":
        return {"style_offset": vectors}
    if kind == "domain_vector":
        return {"domain": vectors, "placement": placement}
    raise ConfigError(f"a {kind} domain changes conv weights, not a vector; vector kinds: {', '.join(KINDS)}")


def mix_reference(ws: torch.Tensor, reference: torch.Tensor, first: int) -> torch.Tensor:
    """W+ codes (B, L, D) with layers l ≥ ``first`` taken from ``reference`` (1, K, D), whose K is
    either L (a whole inverted latent) or L − first (only the replaced layers, as released)."""
    n = ws.shape[1] - first if ws.ndim == 3 else 0
    if n < 1 or reference.ndim != 3 or reference.shape[1] not in (n, ws.shape[1]) or reference.shape[2] != ws.shape[2]:
        raise ConfigError(f"the reference latent {tuple(reference.shape)} cannot replace W+ layers {first}… of "
                          f"codes {tuple(ws.shape)}; use the generator the domain was trained on")
    mixed = ws.clone()
    mixed[:, first:] = reference[:, reference.shape[1] - n:].to(ws)
    return mixed


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
        return synthesis_arguments(self.kind, self.vector * scale, self.placement)

    @property
    def style_mixing_from(self) -> int | None:
        """First W+ layer the reference latent replaces when rendering; None for domains without one."""
        if REFERENCE_LATENT not in self.tensors:
            return None
        return int(self.metadata.get(MIX_FROM_KEY, MIX_FROM))

    def with_reference(self, latent: torch.Tensor, first: int = MIX_FROM) -> Domain:
        """This domain carrying a reference image's inverted W+ codes ``latent`` (1, L, D) and the
        rule that renders it: layers ≥ ``first`` replaced by the reference's (``mix``)."""
        return replace(self, tensors={**self.tensors, REFERENCE_LATENT: latent},
                       metadata={**self.metadata, MIX_FROM_KEY: first})

    def mix(self, ws: torch.Tensor, enabled: bool = True) -> torch.Tensor:
        """Style mixing as the research code renders image domains: ``w⁺[:, l] = w_ref[l]`` for
        l ≥ ``style_mixing_from``, applied to W+ codes (B, L, D) after truncation. ``ws`` itself when
        ``enabled`` is false or the domain has no reference latent."""
        first = self.style_mixing_from
        if not enabled or first is None:
            return ws
        return mix_reference(ws, self.tensors[REFERENCE_LATENT], first)

    def check_generator(self, G: torch.nn.Module) -> None:
        """Raise a one-line error unless ``G`` is of this domain's family and has its layout."""
        family, given = generator_family(self.generator.get("arch")), getattr(G, "family", "stylegan2")
        if family != given:
            raise ConfigError(f"domain file was made for a {family} generator ({self.generator.get('name')}), "
                              f"but the given generator is {given}; pass the generator it was trained on")
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
        """Read a domain file, checking its format marker, metadata, shapes and finiteness (zoo
        names are resolved by :func:`hyperdomainnet.loaders.load_domain`)."""
        tensors, meta = fileformat.load(path, file_format=FORMAT, max_version=FORMAT_VERSION, what=WHAT,
                                        required=REQUIRED_METADATA)
        kind, layout, generator = meta.pop("kind"), meta.pop("domain_layout"), meta.pop("generator")
        placement = meta.pop("placement", "after_demod")
        if (not isinstance(layout, list) or not all(isinstance(c, int) for c in layout)
                or not isinstance(generator, dict) or not isinstance(kind, str)):
            raise FileFormatError(f"{path} has corrupt metadata (kind, domain_layout or generator of the "
                                  "wrong type); write the file again")
        mix_from = meta.get(MIX_FROM_KEY, MIX_FROM)
        if not isinstance(mix_from, int) or isinstance(mix_from, bool) or mix_from < 1:
            raise FileFormatError(f"{path} has a corrupt {MIX_FROM_KEY} {mix_from!r} (a W+ layer index ≥ 1); "
                                  "write the file again")
        vector = tensors.pop(VECTOR_KEY, None)
        if kind in KINDS and (vector is None or vector.shape != (sum(layout),)):
            shape = None if vector is None else tuple(vector.shape)
            raise FileFormatError(f"{path} is inconsistent: vector {shape} vs layout total {sum(layout)}")
        if kind not in KINDS and (vector is not None or not tensors):
            raise FileFormatError(f"{path} is inconsistent: a {kind} domain file must hold named tensors "
                                  "and no vector")
        return cls(vector, kind, layout, generator, placement, meta, tensors)
