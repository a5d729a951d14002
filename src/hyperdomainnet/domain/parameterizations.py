"""Trainable parameterisations of a domain shift of a frozen source generator G, behind one interface.

Every kind starts as the identity (``synthesize`` == ``G.synthesis``), owns its trainable tensors
(G stays frozen) and keeps them per 3×3 modulated conv l (``G.styled_convs``), so that
``train_only_layers`` can restrict training to some convs (adaptive layer selection).

Vector kinds (one tensor per conv, concatenated into a domain file's ``vector``):

* ``domain_vector`` (default): δ_l ∈ R^{c_in}, init 0; W_l = demod(scale·W·s) ⊙ (1 + δ_l) over
  input channels (``after_demod``, official) or W_l = demod(scale·W·(s ⊙ (1 + δ_l)))
  (``before_demod``, the paper's figure).
* ``style_offset`` (StyleDomain): Δs_l ∈ R^{c_in}, init 0; s ← s + Δs_l before modulation.

Weight kinds, the official ablations (``core/parametrizations.py`` heads applied by
``core/stylegan_patches.py`` in ``ModModulatedConv2d``, after demodulation), batch-shared:
W_l = demod(scale·W·s) ⊙ M_l (+ β), with offsets initialised at 0 (γ at 1):

* ``cout_mult``:  M = 1 + a_o                 (a: c_out)
* ``csep_mult``:  M = 1 + b_i + a_o           (b: c_in, a: c_out; a sum, not a product)
* ``cfull_mult``: M = 1 + F_oi                (F: c_out × c_in, shared over the 3×3 taps)
* ``cink_mult``:  M = 1 + b_i + K_xy          (K: 3×3 kernel mask)
* ``coutk_mult``: M = 1 + a_o + K_xy
* ``aff_cout``:   W ← γ_o·W + β_o             (β added to every weight of output channel o)

Their regularised tensor per conv is the official ``offsets_l2`` input: the sum of the offsets,
broadcast (M − 1 in its unexpanded shape), and for ``aff_cout`` γ − 1 and β (the official
``affine_l2``). ``full`` fine-tunes a copy of the synthesis network (StyleGAN-NADA baseline).
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError, FileFormatError
from ..stylegan2.generator import Generator
from ..stylegan2.layers import PLACEMENTS, ConvModifier, Placement
from .files import KINDS, Domain, synthesis_arguments

DEFAULT_PARAMETERIZATION = "domain_vector"
Scale = float | torch.Tensor


class Parameterization(nn.Module):
    """A trainable change of the frozen source generator G; ``name`` is its registry key;
    ``per_sample``: whether it can change each sample differently (vector kinds) or changes the
    conv weights of the whole batch."""

    name: ClassVar[str] = ""
    per_sample: ClassVar[bool] = False

    def synthesize(self, G: Generator, ws: torch.Tensor, scale: Scale = 1.0,
                   **synthesis_kwargs: Any) -> torch.Tensor:
        """Adapted images G_B(ws), the change scaled by α = ``scale`` (a (B,) tensor: per sample,
        vector kinds only); kwargs go to ``G.synthesis``."""
        raise NotImplementedError

    def regularized_tensors(self) -> list[torch.Tensor]:
        """The per-layer tensors ``offsets_l2`` / ``offsets_l1`` act on (zero at the identity)."""
        raise NotImplementedError

    def layer_groups(self) -> list[nn.Module | nn.Parameter]:
        """What this kind trains for each 3×3 modulated conv, in ``G.styled_convs`` order."""
        raise NotImplementedError

    def to_domain_file(self, G: Generator, metadata: dict[str, Any]) -> Domain:
        """The shareable result, for the generator it was trained on."""
        raise NotImplementedError

    @classmethod
    def from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        """Rebuild from a domain file (``Parameterization.from_domain_file`` picks the file's kind)."""
        kind = parameterization_class(domain.kind)
        if cls is not Parameterization and kind is not cls:
            raise FileFormatError(f"the domain file holds a {domain.kind} parameterisation, not {cls.name}; "
                                  "load it with Parameterization.from_domain_file")
        domain.check_generator(G)
        return kind._from_domain_file(domain, G)

    @classmethod
    def _from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser should update (those with ``requires_grad``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def train_only_layers(self, indices: Iterable[int]) -> None:
        """Train only the given convs (indices into ``G.styled_convs``); the rest keep their values."""
        chosen = set(indices)
        groups = self.layer_groups()
        if not chosen <= set(range(len(groups))):
            raise ConfigError(f"layer indices {sorted(chosen)} out of range; the generator has {len(groups)} convs")
        for p in self.parameters():
            p.requires_grad_(False)
        for j in chosen:
            _set_requires_grad(groups[j], True)


def _set_requires_grad(group: nn.Module | nn.Parameter, flag: bool) -> None:
    for p in [group] if isinstance(group, nn.Parameter) else group.parameters():
        p.requires_grad_(flag)


def _device(G: Generator) -> torch.device:
    return G.latent_avg.device


def require_per_sample(kind: str, need: str, fix: str) -> None:
    """One-line ConfigError unless ``kind`` changes each sample on its own (a vector kind): ``need``
    says what needs that, ``fix`` what to do instead."""
    if not parameterization_class(kind).per_sample:
        raise ConfigError(f"{need} needs a per-sample parameterisation ({' or '.join(KINDS)}), not {kind}, "
                          f"which applies one change to the whole batch; {fix}")


def _scalar_scale(scale: Scale, name: str) -> float | torch.Tensor:
    """α for batch-shared kinds: a float or a 0-d tensor."""
    if isinstance(scale, torch.Tensor) and scale.ndim > 0:
        require_per_sample(name, "a per-sample scale", "give one scale")
    return scale


# ----- vector kinds --------------------------------------------------------------------------
class _VectorParameterization(Parameterization):
    """One trainable vector per conv (input-channel layout), initialised at 0."""

    per_sample = True
    placement: str = "after_demod"

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.layers = nn.ParameterList(
            [nn.Parameter(torch.zeros(c, device=_device(G))) for c in G.domain_layout])

    def vector(self) -> torch.Tensor:
        """The concatenated (D,) vector."""
        return torch.cat(list(self.layers))

    def scaled_vector(self, scale: Scale = 1.0) -> torch.Tensor:
        """α·v: (D,) for a scalar α, (B, D) for per-sample α of shape (B,)."""
        v = self.vector()
        if isinstance(scale, torch.Tensor) and scale.ndim == 1:
            return v[None] * scale[:, None].to(v)
        return v * scale

    def layer_groups(self) -> list[nn.Module | nn.Parameter]:
        return list(self.layers)

    def regularized_tensors(self) -> list[torch.Tensor]:
        return list(self.layers)

    def synthesize(self, G: Generator, ws: torch.Tensor, scale: Scale = 1.0,
                   **synthesis_kwargs: Any) -> torch.Tensor:
        """``scale`` may be a (B,) tensor: a per-sample strength α_b of the same vector."""
        return self.synthesize_per_sample(G, ws, self.scaled_vector(scale), **synthesis_kwargs)

    def synthesize_per_sample(self, G: Generator, ws: torch.Tensor, vectors: torch.Tensor,
                              **synthesis_kwargs: Any) -> torch.Tensor:
        """G_B(ws) with this kind's change given per sample, ``vectors`` (B, D) (or (D,) for all)
        instead of the trained one, e.g. K trained vectors over a K·B batch."""
        return G.synthesis(ws, **synthesis_arguments(self.name, vectors, self.placement), **synthesis_kwargs)

    def to_domain_file(self, G: Generator, metadata: dict[str, Any]) -> Domain:
        return Domain(self.vector().detach().cpu(), self.name, list(G.domain_layout), dict(G.identity),
                      self.placement, dict(metadata))

    def load_vector(self, vector: torch.Tensor) -> None:
        """Copy a (D,) vector into the per-layer parameters."""
        with torch.no_grad():
            for p, v in zip(self.layers, torch.split(vector, [p.numel() for p in self.layers])):
                p.copy_(v)


class DomainVector(_VectorParameterization):
    """Domain modulation δ (the paper's parameterisation); ``placement`` after/before demodulation."""

    name = "domain_vector"

    def __init__(self, G: Generator, placement: Placement = "after_demod") -> None:
        if placement not in PLACEMENTS:
            raise ConfigError(f"unknown placement {placement!r}; use one of {', '.join(PLACEMENTS)}")
        super().__init__(G)
        self.placement = placement

    @classmethod
    def _from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        p = cls(G, placement=domain.placement)
        p.load_vector(domain.vector)
        return p


class StyleOffset(_VectorParameterization):
    """StyleDomain StyleSpace offset: s ← s + Δs."""

    name = "style_offset"

    @classmethod
    def _from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        p = cls(G)
        p.load_vector(domain.vector)
        return p


# ----- weight kinds (official ablations) ---------------------------------------------------
FIELD_SHAPES: dict[str, Callable[[int, int, int], tuple[int, ...]]] = {
    "out": lambda c_out, c_in, k: (c_out, 1, 1, 1),
    "in": lambda c_out, c_in, k: (1, c_in, 1, 1),
    "kernel": lambda c_out, c_in, k: (1, 1, k, k),
    "shift": lambda c_out, c_in, k: (c_out, c_in, 1, 1),
    "gamma": lambda c_out, c_in, k: (c_out, 1, 1, 1),
    "beta": lambda c_out, c_in, k: (c_out, 1, 1, 1),
}
FIELD_INIT = {"gamma": 1.0}


class _WeightParameterization(Parameterization):
    """Per-conv tensors (``fields``, broadcastable to (c_out, c_in, k, k)) changing the demodulated weight."""

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for sc in G.styled_convs:
            conv = sc.conv
            self.layers.append(nn.ParameterDict({
                f: nn.Parameter(torch.full(FIELD_SHAPES[f](conv.out_channels, conv.in_channels, conv.kernel_size),
                                           FIELD_INIT.get(f, 0.0), device=_device(G)))
                for f in self.fields}))

    def modifier(self, layer: nn.ParameterDict, scale: float | torch.Tensor) -> ConvModifier:
        """This conv's weight change, scaled by α."""
        raise NotImplementedError

    def layer_groups(self) -> list[nn.Module | nn.Parameter]:
        return list(self.layers)

    def synthesize(self, G: Generator, ws: torch.Tensor, scale: Scale = 1.0,
                   **synthesis_kwargs: Any) -> torch.Tensor:
        scale = _scalar_scale(scale, self.name)
        return G.synthesis(ws, modifiers=[self.modifier(layer, scale) for layer in self.layers],
                           **synthesis_kwargs)

    def to_domain_file(self, G: Generator, metadata: dict[str, Any]) -> Domain:
        tensors = {f"{f}.{j}": t.detach().cpu() for j, layer in enumerate(self.layers) for f, t in layer.items()}
        return Domain(None, self.name, list(G.domain_layout), dict(G.identity), "after_demod",
                      dict(metadata), tensors)

    @classmethod
    def _from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        p = cls(G)
        expected = {f"{f}.{j}": t for j, layer in enumerate(p.layers) for f, t in layer.items()}
        if set(domain.tensors) != set(expected):
            raise FileFormatError(f"{cls.name} domain file has tensors {sorted(domain.tensors)[:4]}…, expected "
                                  f"{sorted(expected)[:4]}…; pass the generator it was trained on")
        with torch.no_grad():
            for key, t in expected.items():
                if domain.tensors[key].shape != t.shape:
                    raise FileFormatError(f"{cls.name} domain file tensor {key} has shape "
                                          f"{tuple(domain.tensors[key].shape)}, the generator needs {tuple(t.shape)}; "
                                          "pass the generator it was trained on")
                t.copy_(domain.tensors[key])
        return p


class _MultiplierParameterization(_WeightParameterization):
    """M = 1 + Σ fields (broadcast), as the official ``ones + offsets[...] + ...`` patches."""

    @staticmethod
    def offset(layer: nn.ParameterDict) -> torch.Tensor:
        """M − 1 in its unexpanded broadcast shape."""
        return sum(layer.values())  # type: ignore[return-value]

    def modifier(self, layer: nn.ParameterDict, scale: float | torch.Tensor) -> ConvModifier:
        return ConvModifier(mult=1 + scale * self.offset(layer))

    def regularized_tensors(self) -> list[torch.Tensor]:
        return [self.offset(layer) for layer in self.layers]


class ChannelOut(_MultiplierParameterization):
    name, fields = "cout_mult", ("out",)


class ChannelInOut(_MultiplierParameterization):
    name, fields = "csep_mult", ("in", "out")


class ChannelFull(_MultiplierParameterization):
    name, fields = "cfull_mult", ("shift",)


class ChannelInKernel(_MultiplierParameterization):
    name, fields = "cink_mult", ("in", "kernel")


class ChannelOutKernel(_MultiplierParameterization):
    name, fields = "coutk_mult", ("out", "kernel")


class AffineOut(_WeightParameterization):
    """W ← γ_o·W + β_o; scaled: γ ← 1 + α(γ − 1), β ← α·β."""

    name, fields = "aff_cout", ("gamma", "beta")

    def modifier(self, layer: nn.ParameterDict, scale: float | torch.Tensor) -> ConvModifier:
        return ConvModifier(mult=1 + scale * (layer["gamma"] - 1), bias=scale * layer["beta"].flatten())

    def regularized_tensors(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in (layer["gamma"] - 1, layer["beta"])]


# ----- full fine-tuning ---------------------------------------------------------------------
PHASES: dict[str, Callable[[Generator], list[nn.Module | nn.Parameter]]] = {
    "convs": lambda G: [G.input, G.conv1, *G.convs],
    "all": lambda G: [G.input, G.conv1, G.to_rgb1, *G.convs, *G.to_rgbs],
    "texture": lambda G: [G.input, G.conv1, *G.convs[2:10]],
    "shape": lambda G: [G.input, G.conv1, *G.convs[0:2]],
    "no_fine": lambda G: [G.input, G.conv1, *G.convs[:10]],
    "shape_expanded": lambda G: [G.input, G.conv1, *G.convs[0:3]],
    "affine": lambda G: [c.conv.modulation for c in G.convs],
    "conv_kernel": lambda G: [c.conv.weight for c in G.convs],
}


class FullFineTuning(Parameterization):
    """StyleGAN-NADA baseline: a trainable copy of G's synthesis network, ``phase`` choosing what trains.

    Phases (as NADA / the official ``original`` kind; conv k = ``G.convs[k]``): ``convs`` (NADA's
    default) constant + conv1 + all convs; ``all`` every synthesis layer incl. toRGBs (NADA's also
    trains the mapping, which stays frozen here); ``texture`` constant + conv1 + convs[2:10];
    ``shape`` constant + conv1 + convs[0:2]; ``no_fine`` constant + conv1 + convs[:10];
    ``shape_expanded`` constant + conv1 + convs[0:3]; ``affine`` the style affines of convs;
    ``conv_kernel`` the weights of convs (both official ones leave conv1 out).
    Regularised tensors: each trainable parameter minus its source value.
    """

    name = "full"

    def __init__(self, G: Generator, phase: str = "convs") -> None:
        super().__init__()
        if phase not in PHASES:
            raise ConfigError(f"unknown fine-tuning phase {phase!r}; use one of {', '.join(PHASES)}")
        self.phase = phase
        self.generator = copy.deepcopy(G).requires_grad_(False)
        for group in PHASES[phase](self.generator):
            _set_requires_grad(group, True)
        self._source = dict(G.named_parameters())  # references to the frozen source, not registered
        self._source_identity = dict(G.identity)

    def synthesize(self, G: Generator, ws: torch.Tensor, scale: Scale = 1.0,
                   **synthesis_kwargs: Any) -> torch.Tensor:
        """Render with the fine-tuned copy (G, the frozen source, is not used)."""
        if not (isinstance(scale, (int, float)) and scale == 1):
            raise ConfigError("full fine-tuning cannot scale its change; render with scale 1")
        return self.generator.synthesis(ws, **synthesis_kwargs)

    def layer_groups(self) -> list[nn.Module | nn.Parameter]:
        return list(self.generator.styled_convs)

    def regularized_tensors(self) -> list[torch.Tensor]:
        return [p - self._source[n] for n, p in self.generator.named_parameters() if p.requires_grad]

    def to_generator(self) -> Generator:
        """The fine-tuned generator, frozen and in eval mode."""
        G = copy.deepcopy(self.generator).requires_grad_(False).eval()
        G.identity = {"name": None, "sha256": None, "arch": G.arch.to_dict(),
                      "finetuned_from": {k: self._source_identity.get(k) for k in ("name", "sha256")}}
        return G

    def to_domain_file(self, G: Generator, metadata: dict[str, Any]) -> Domain:
        raise ConfigError("full fine-tuning produces a generator .pt, not a domain file; save "
                          "to_generator() with hyperdomainnet.stylegan2.formats.rosinality.write_rosinality")

    @classmethod
    def _from_domain_file(cls, domain: Domain, G: Generator) -> Parameterization:
        raise FileFormatError("domain files never hold full fine-tuning; load the fine-tuned generator .pt instead")


# ----- registry ------------------------------------------------------------------------------
PARAMETERIZATIONS: dict[str, type[Parameterization]] = {cls.name: cls for cls in (
    DomainVector, StyleOffset, ChannelOut, ChannelInOut, ChannelFull, ChannelInKernel, ChannelOutKernel,
    AffineOut, FullFineTuning)}


def parameterization_class(name: str) -> type[Parameterization]:
    """The class registered under ``name``; one-line ConfigError listing the known kinds otherwise."""
    if name not in PARAMETERIZATIONS:
        raise ConfigError(f"unknown parameterization {name!r}; choose one of {', '.join(PARAMETERIZATIONS)}")
    return PARAMETERIZATIONS[name]


def build_parameterization(name: str, G: Generator, **options: Any) -> Parameterization:
    """A fresh (identity) parameterisation of kind ``name`` for G; options as the kind's constructor."""
    cls = parameterization_class(name)
    if getattr(G, "family", "stylegan2") != "stylegan2" and cls not in (DomainVector, StyleOffset):
        raise ConfigError(f"parameterization {name!r} changes StyleGAN2 conv weights; with a {G.family} "
                          "generator use domain_vector or style_offset")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "G")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"parameterization {name!r} has no option {', '.join(unknown)}; "
                          f"its options: {', '.join(allowed) or 'none'}")
    return cls(G, **options)



# ----- the door from domain data to images ------------------------------------------------------
def batch_key(domain: Domain | None) -> str | None:
    """Domains with one key render in one pass of ``synthesize``: vector kinds by placement (the
    source and StyleSpace offsets count as ``after_demod``); a weight-kind domain only with itself (None)."""
    if domain is None:
        return "after_demod"
    if not parameterization_class(domain.kind).per_sample:
        return None
    return domain.placement if domain.kind == "domain_vector" else "after_demod"


def synthesize(G: Generator, ws: torch.Tensor, domains: Sequence[Domain | None], scales: Sequence[float],
               style_mixing: bool = True, **synthesis_kwargs: Any) -> torch.Tensor:
    """Images of W+ codes ``ws`` (B, n_latent, D), sample b in ``domains[b]`` at strength ``scales[b]``
    (None: the source generator; one domain and scale: every sample). Vector kinds apply per sample,
    several at once when they share a ``batch_key`` (a kind a sample does not use gets 0 there); a
    weight-kind domain changes the conv weights of the whole batch, so it must be every sample's.
    Image domains replace the fine W+ layers of their samples by the reference's (``Domain.mix``)
    unless ``style_mixing`` is false. Domains are checked against G; kwargs go to ``G.synthesis``."""
    count = ws.shape[0]
    domains, scales = (list(domains) * count, list(scales) * count) if len(domains) == 1 else (domains, scales)
    if style_mixing and any(d is not None and d.style_mixing_from is not None for d in domains):
        ws = torch.cat([ws[b:b + 1] if d is None else d.mix(ws[b:b + 1]) for b, d in enumerate(domains)])
    used = [d for d in domains if d is not None]
    for domain in used:
        domain.check_generator(G)
    keys = {batch_key(d) for d in domains}
    if None in keys:
        if any(d is not used[0] for d in domains) or len(set(scales)) > 1:
            raise ConfigError(f"a {used[0].kind} domain changes the conv weights of the whole batch; render "
                              "it in a batch of its own")
        return Parameterization.from_domain_file(used[0], G).synthesize(G, ws, scales[0], **synthesis_kwargs)
    if len(keys) > 1:
        raise ConfigError(f"domains of placements {sorted(keys)} need separate passes; group them by batch_key")
    placement, zero = keys.pop(), torch.zeros(G.domain_size)
    arguments: dict[str, Any] = {}
    for kind in dict.fromkeys(d.kind for d in used):
        vectors = torch.stack([d.vector.float() * s if d is not None and d.kind == kind else zero
                               for d, s in zip(domains, scales)])
        arguments.update(synthesis_arguments(kind, vectors.to(ws.device), placement))
    return G.synthesis(ws, **arguments, **synthesis_kwargs)
