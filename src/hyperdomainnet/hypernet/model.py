"""HyperDomainNet: a hypernetwork mapping a CLIP embedding to a generator's domain vector.

Architecture (the official ``residual_channelin`` mapper with a ``shared`` backbone):

* stem: Linear(E→W) → ReLU → BatchNorm1d(W);
* backbone: (depth − 1) residual blocks ``y = ReLU(x + BN(Linear(ReLU(BN(Linear(x))))))`` with an
  inner width of 512 (W→512→W);
* one head per 3×3 modulated conv l: (head_depth − 1) residual blocks, then Linear(W→c_in(l)).

Every Linear is Xavier-uniform scaled by 0.01 with zero bias, so δ ≈ 0 (the source generator) at
initialisation. ``forward`` returns the flat domain vectors (B, Σ c_in) in ``domain_layout`` order
(conv1, convs[0], …). BatchNorm makes the output depend on the batch in training mode; use
:meth:`HyperDomainNet.domain_vectors` for inference (eval mode, no grad).

File format (see :mod:`hyperdomainnet.fileformat`): the state dict (weights and BatchNorm
statistics) plus metadata ``format`` ("hyperdomainnet.hypernet"), ``version``, ``architecture``
(domain_layout, embed_dim, width, depth, head_depth), ``clip_model`` (encoder of the inputs),
``input`` ("text" | "image"), and whatever the trainer adds (``generator`` identity,
``domain_lists_sha256``, ``training`` config, ``library_version``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import fileformat
from ..clip import ClipEncoder, load_clip
from ..errors import ConfigError, FileFormatError, first_line

FORMAT = "hyperdomainnet.hypernet"
FORMAT_VERSION = 1
INNER_WIDTH = 512
INIT_GAIN = 0.01
INPUTS: tuple[str, ...] = ("text", "image")
REQUIRED_METADATA: tuple[str, ...] = ("clip_model", "input")
STORED_KEYS: tuple[str, ...] = ("architecture",)  # metadata the file format adds (besides format, version)
WHAT = "HyperDomainNet file"


def init_linear(layer: nn.Linear) -> None:
    """Xavier-uniform weight scaled by 0.01, zero bias (the official mapper initialisation)."""
    nn.init.xavier_uniform_(layer.weight)
    with torch.no_grad():
        layer.weight.mul_(INIT_GAIN)
        layer.bias.zero_()


def prompt_embeddings(encoder: ClipEncoder, prompts: Sequence[str]) -> torch.Tensor:
    """HyperDomainNet text inputs: the normalised CLIP embeddings of the raw prompts (template
    "{}", as the official trainer and inference), float32, (N, E)."""
    return encoder.encode_text(list(prompts)).float()


class ResidualBlock(nn.Module):
    """y = ReLU(x + BN₂(fc₂(ReLU(BN₁(fc₁(x)))))), fc₁: W→512, fc₂: 512→W."""

    def __init__(self, width: int, inner: int = INNER_WIDTH) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, inner)
        self.norm1 = nn.BatchNorm1d(inner)
        self.fc2 = nn.Linear(inner, width)
        self.norm2 = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.fc1(x)))
        return torch.relu(x + self.norm2(self.fc2(h)))


class Stem(nn.Module):
    """BN(ReLU(Linear(x))): the input layer, embedding E → width W."""

    def __init__(self, embed_dim: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embed_dim, width)
        self.norm = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.linear(x)))


class Head(nn.Module):
    """Residual blocks, then Linear(W → c_in) for one modulated conv."""

    def __init__(self, width: int, c_in: int, n_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(n_blocks))
        self.out = nn.Linear(width, c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out(x)


class HyperDomainNet(nn.Module):
    """Embedding (B, E) → flat domain vectors (B, Σ domain_layout); see the module docstring."""

    def __init__(self, domain_layout: Sequence[int], embed_dim: int = 512, width: int = 512,
                 depth: int = 4, head_depth: int = 2) -> None:
        super().__init__()
        layout = [int(c) for c in domain_layout]
        if not layout or min(layout) < 1:
            raise ConfigError(f"domain_layout must be a non-empty list of positive sizes, got {layout}")
        if embed_dim < 1 or width < 1 or depth < 1 or head_depth < 1:
            raise ConfigError("embed_dim, width, depth and head_depth must be positive")
        self.domain_layout = layout
        self.embed_dim, self.width, self.depth, self.head_depth = embed_dim, width, depth, head_depth
        self.metadata: dict[str, Any] = {}
        self.stem = Stem(embed_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth - 1))
        self.heads = nn.ModuleList(Head(width, c, head_depth - 1) for c in layout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear(module)

    @property
    def domain_size(self) -> int:
        return sum(self.domain_layout)

    @property
    def architecture(self) -> dict[str, Any]:
        """Constructor arguments: ``HyperDomainNet(**net.architecture)`` rebuilds the shapes."""
        return {"domain_layout": list(self.domain_layout), "embed_dim": self.embed_dim,
                "width": self.width, "depth": self.depth, "head_depth": self.head_depth}

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise ConfigError(f"expected embeddings of shape (B, {self.embed_dim}), "
                              f"got {tuple(embeddings.shape)}")
        if self.training and embeddings.shape[0] < 2:
            raise ConfigError("HyperDomainNet in training mode needs a batch of at least 2 embeddings "
                              "(BatchNorm); use domain_vectors() or .eval() for a single embedding")
        x = self.stem(embeddings)
        for block in self.blocks:
            x = block(x)
        return torch.cat([head(x) for head in self.heads], dim=1)

    def domain_vectors(self, embeddings: torch.Tensor | str | Sequence[str]) -> torch.Tensor:
        """Inference: δ for (B, E) or (E,) embeddings, in eval mode under no_grad.

        Prompts instead of embeddings (a list, or one string) are embedded first by
        :meth:`embed_prompts`. The previous train/eval mode is restored afterwards. Returns (B, D),
        or (D,) for one embedding or one string.
        """
        if not isinstance(embeddings, torch.Tensor):
            single = isinstance(embeddings, str)
            embeddings = self.embed_prompts([embeddings] if single else list(embeddings))
            embeddings = embeddings[0] if single else embeddings
        single = embeddings.ndim == 1
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self(embeddings.unsqueeze(0) if single else embeddings)
        finally:
            self.train(was_training)
        return out[0] if single else out

    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, E) inputs for prompts: :func:`prompt_embeddings` with :meth:`input_encoder`."""
        if self.metadata.get("input", "text") != "text":
            raise ConfigError(f"this HyperDomainNet maps {self.metadata['input']} embeddings, not text; pass "
                              "the CLIP embeddings of reference images instead of prompts")
        embeddings = prompt_embeddings(self.input_encoder(), prompts)
        if embeddings.shape[1] != self.embed_dim:
            raise FileFormatError(f"CLIP {self.metadata['clip_model']} gives {embeddings.shape[1]}-d embeddings "
                                  f"but this HyperDomainNet expects {self.embed_dim}; its clip_model entry is wrong")
        return embeddings

    def input_encoder(self) -> ClipEncoder:
        """The CLIP encoder named in ``metadata["clip_model"]``, loaded on the network's device on
        first use (not part of the module's state)."""
        spec = self.metadata.get("clip_model")
        if not spec:
            raise ConfigError("this HyperDomainNet does not name its CLIP encoder (metadata clip_model); "
                              "set net.metadata['clip_model'] or pass embeddings")
        device = next(self.parameters()).device
        cached = self.__dict__.get("_input_encoder")
        if cached is None or cached.name != spec or cached.device != device:
            cached = self.__dict__["_input_encoder"] = load_clip(spec, device)
        return cached

    # ----- file format ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
        """Write weights and metadata atomically; ``metadata`` is merged over ``self.metadata``.

        The merged metadata must name ``clip_model`` and ``input`` ("text" | "image"), else ConfigError.
        """
        meta = {**self.metadata, **(metadata or {})}
        missing = [k for k in REQUIRED_METADATA if not meta.get(k)]
        if missing:
            raise ConfigError(f"HyperDomainNet metadata needs {', '.join(missing)}")
        if meta["input"] not in INPUTS:
            raise ConfigError(f"metadata 'input' must be one of {INPUTS}, got {meta['input']!r}")
        meta = {k: v for k, v in meta.items() if k not in fileformat.RESERVED}
        fileformat.save(path, self.state_dict(), {**meta, "architecture": self.architecture},
                        file_format=FORMAT, version=FORMAT_VERSION)
        self.metadata = meta
        return Path(path)

    @classmethod
    def _check_recorded(cls, arch: Any, tensors: dict[str, torch.Tensor], path: Path) -> None:
        """Before allocating: the recorded architecture has no more layers than the file has
        tensors, and built on the meta device it has exactly the file's tensor shapes."""
        layers = int(arch["depth"]) + len(arch["domain_layout"]) * int(arch["head_depth"])
        if layers > len(tensors):
            raise FileFormatError(f"{path} is a corrupt {WHAT}: it records an architecture of {layers:,} layers "
                                  f"but holds {len(tensors)} tensors")
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in cls(**arch).state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != found:
            differ = sorted(set(expected.items()) ^ set(found.items()))[:2]
            raise FileFormatError(f"{path} is a corrupt {WHAT}: its tensors do not match its recorded "
                                  f"architecture ({differ})")

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> HyperDomainNet:
        """Read a file written by :meth:`save`; the model comes back in eval mode on ``device`` (zoo
        names such as ``hdn-large`` are resolved by :func:`hyperdomainnet.loaders.load_hypernet`)."""
        tensors, meta = fileformat.load(path, file_format=FORMAT, max_version=FORMAT_VERSION, what=WHAT,
                                        required=(*REQUIRED_METADATA, *STORED_KEYS))
        try:
            cls._check_recorded(meta["architecture"], tensors, path)
            net = cls(**meta["architecture"])
            result = net.load_state_dict(tensors, strict=False)
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            if isinstance(exc, FileFormatError):
                raise
            raise FileFormatError(f"{path} is a corrupt {WHAT} "
                                  f"({type(exc).__name__}: {first_line(exc, 120)})") from None
        if result.missing_keys or result.unexpected_keys:
            raise FileFormatError(f"{path} does not match its recorded architecture (missing "
                                  f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
        net.metadata = {k: v for k, v in meta.items() if k not in STORED_KEYS}
        return net.eval().to(device)
