"""Domain arithmetic: strength specs (``file*0.6``), scaled sums and differences, sparsification.

Every kind is a change of the frozen generator with an identity value ι per tensor (0 for the
vector kinds and the multiplier offsets, 1 for ``aff_cout``'s γ). Arithmetic acts on the
deviation from it: combine([(d₁, α₁), …]) has tensors t = ι + Σ_k α_k (t_k − ι), so a scale
of 1 reproduces the file, 0 the source generator, and sums add the domain shifts (StyleDomain's
mixing of domains). Only files of the same kind (and placement) for the same generator mix.

``prune`` is StyleSpaceSparse: keep the ⌊keep·N⌉ entries of largest |t − ι| over the whole file
and reset the rest to ι.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..ranges import STRENGTH, finite_in
from .files import Domain
from .parameterizations import FIELD_INIT

__all__ = ["DomainSpec", "parse_domain_spec", "check_compatible", "combine", "scale", "prune"]


@dataclass(frozen=True)
class DomainSpec:
    """A domain file and its strength α, as written on the command line: ``path[*α]``."""

    path: Path
    scale: float = 1.0

    @property
    def label(self) -> str:
        """``stem`` for α = 1, else ``stem*α``."""
        return self.path.stem if self.scale == 1 else f"{self.path.stem}*{self.scale:g}"


def parse_domain_spec(text: str) -> DomainSpec:
    """``"a.safetensors*0.6"`` → DomainSpec(a.safetensors, 0.6); no ``*`` means α = 1."""
    path, star, strength = text.rpartition("*")
    if not star:
        return DomainSpec(Path(text))
    if not path:
        raise ConfigError(f"bad domain spec {text!r}: write FILE or FILE*STRENGTH, e.g. pixar.safetensors*0.6")
    return DomainSpec(Path(path), finite_in(strength, f"bad domain spec {text!r}: STRENGTH", STRENGTH))


def _identity_value(key: str) -> float:
    """ι of a stored tensor: FIELD_INIT of its field (``gamma.3`` → γ → 1), else 0."""
    return FIELD_INIT.get(key.split(".")[0], 0.0)


def _tensors(domain: Domain) -> dict[str, torch.Tensor]:
    return {"vector": domain.vector} if domain.vector is not None else domain.tensors


def _generator_key(domain: Domain) -> Any:
    """What identifies the generator: its SHA-256 when known, else its name."""
    return domain.generator.get("sha256") or domain.generator.get("name")


def check_compatible(domains: Sequence[Domain], labels: Sequence[str]) -> None:
    """One-line error unless all files share kind, placement, generator and tensor shapes."""
    first, name = domains[0], labels[0]
    for domain, label in zip(domains[1:], labels[1:]):
        if domain.kind != first.kind:
            raise ConfigError(f"cannot mix a {first.kind} domain ({name}) with a {domain.kind} domain ({label}); "
                              "combine only domain files of the same kind")
        if domain.kind == "domain_vector" and domain.placement != first.placement:
            raise ConfigError(f"{name} uses placement {first.placement}, {label} {domain.placement}; "
                              "combine only domain vectors of the same placement")
        if _generator_key(domain) != _generator_key(first) or domain.domain_layout != first.domain_layout:
            raise ConfigError(f"{name} was trained on generator {first.generator.get('name')}, {label} on "
                              f"{domain.generator.get('name')}; combine only domains of the same generator")
        shapes = {k: tuple(t.shape) for k, t in _tensors(domain).items()}
        if shapes != {k: tuple(t.shape) for k, t in _tensors(first).items()}:
            raise ConfigError(f"{label} holds different tensors than {name}; combine only domains trained "
                              "on the same generator with the same parameterisation")


def combine(terms: Sequence[tuple[Domain, float]], labels: Sequence[str] | None = None) -> Domain:
    """Σ_k α_k·(d_k − ι) + ι over compatible domain files; metadata records the terms."""
    if not terms:
        raise ConfigError("nothing to combine: give at least one domain file")
    domains = [d for d, _ in terms]
    labels = list(labels) if labels is not None else [f"domain {k}" for k in range(len(terms))]
    check_compatible(domains, labels)
    first = domains[0]
    summed: dict[str, torch.Tensor] = {}
    for key in _tensors(first):
        iota = _identity_value(key)
        summed[key] = iota + torch.stack([float(a) * (_tensors(d)[key].float() - iota) for d, a in terms]).sum(0)
    record = [{"domain": label, "scale": float(a), "target": d.metadata.get("target")}
              for (d, a), label in zip(terms, labels)]
    metadata = {"arithmetic": {"op": "combine", "terms": record}}
    if len(terms) == 1:
        metadata = {**first.metadata, **metadata}
    vector = summed.pop("vector", None)
    return Domain(vector, first.kind, list(first.domain_layout), dict(first.generator), first.placement,
                  metadata, summed)


def scale(domain: Domain, alpha: float, label: str = "domain") -> Domain:
    """The domain at strength α: ι + α·(d − ι)."""
    return combine([(domain, alpha)], [label])


def prune(domain: Domain, keep: float) -> Domain:
    """StyleSpaceSparse: keep the k = max(1, round(keep·N)) largest |t − ι| of all N numbers, reset
    the others to ι (ties broken by position); metadata records ``sparsify``."""
    if not 0 < keep <= 1:
        raise ConfigError(f"--keep {keep} must be a fraction in (0, 1], e.g. 0.2 for the top 20%")
    tensors = _tensors(domain)
    offsets = {k: t.float() - _identity_value(k) for k, t in tensors.items()}
    flat = torch.cat([o.flatten() for o in offsets.values()])
    k = max(1, round(keep * flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[torch.topk(flat.abs(), k, sorted=False).indices] = True
    pruned: dict[str, torch.Tensor] = {}
    start = 0
    for key, o in offsets.items():
        part = mask[start:start + o.numel()].view(o.shape)
        pruned[key] = torch.where(part, o, torch.zeros_like(o)) + _identity_value(key)
        start += o.numel()
    metadata = {**domain.metadata, "sparsify": {"method": "StyleSpaceSparse", "keep": keep, "kept": k,
                                                "total": flat.numel()}}
    vector = pruned.pop("vector", None)
    return Domain(vector, domain.kind, list(domain.domain_layout), dict(domain.generator), domain.placement,
                  metadata, pruned)
