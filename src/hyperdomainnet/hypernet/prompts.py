"""A HyperDomainNet's predictions as domains: δ = HyperDomainNet(e) wrapped as ``Domain`` data that
renders like any domain file; e a prompt's text embedding or a reference image's image embedding."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..domain.files import Domain
from ..errors import ConfigError
from ..images import Fit, load_image
from ..loaders import load_hypernet
from .model import HyperDomainNet


def vector_domains(net: HyperDomainNet, vectors: torch.Tensor, metadata: Sequence[dict[str, Any]]) -> list[Domain]:
    """One domain-vector ``Domain`` per row of ``vectors`` (N, D), for the generator and placement
    the network's file names, with ``metadata[i]`` as row i's metadata."""
    generator = dict(net.metadata.get("generator") or {"name": None})
    placement = net.metadata.get("placement", "after_demod")
    return [Domain(vector, "domain_vector", list(net.domain_layout), generator, placement, dict(meta))
            for vector, meta in zip(vectors.float().cpu(), metadata)]


def prompt_domains(path: Path, prompts: Sequence[str], device: torch.device | str = "cpu") -> list[Domain]:
    """One domain per prompt: δ = HyperDomainNet(e), e = the normalised CLIP text embedding of the raw
    prompt (template "{}", as the official inference) with the encoder named in the file."""
    if not prompts or any(not p.strip() for p in prompts):
        raise ConfigError("a --text prompt is empty; describe the domain, e.g. --text \"Pixar\"")
    net = load_hypernet(path, device)
    return vector_domains(net, net.domain_vectors(list(prompts)),
                          [{"target": prompt, "hypernet": str(path)} for prompt in prompts])


def reference_inputs(net: HyperDomainNet, references: Sequence[str | Path], size: int,
                     fit: Fit = "crop") -> torch.Tensor:
    """(N, E) inputs of an image HyperDomainNet, as its trainer computes them: the file's CLIP encoder's
    normalised embeddings of the reference images fitted to the generator's ``size``."""
    if net.metadata.get("input") != "image":
        raise ConfigError(f"this HyperDomainNet maps {net.metadata.get('input')} embeddings, not images; pass an "
                          "image HyperDomainNet (trained with --images)")
    mapper = net.input_encoder()
    with torch.no_grad():
        return torch.cat([mapper.encode_images(load_image(p, size, fit)).float() for p in references])
