"""Frozen CLIP encoders (open_clip) with differentiable image preprocessing, and ensembles.

Encoder specs accepted by :func:`load_clip`:

- ``ViT-B/32``, ``ViT-B/16``, ``ViT-L/14``, ``ViT-L/14@336px``: OpenAI weights through open_clip
  (``<arch>-quickgelu`` + tag ``openai``; downloaded and cached by open_clip on first use).
- ``open_clip:<arch>:<pretrained tag>``: any open_clip architecture and tag.
- ``file:<arch>:<path>``: local weights (``.safetensors``, or a state dict read with
  ``torch.load(weights_only=True)``); OpenAI weights need a ``*-quickgelu`` arch.
- ``random:<arch>``: random weights (offline; seeded, so every build is identical).
- ``random:tiny``: a tiny built-in ViT (32 px input, 32-d embeddings) for tests and smoke runs;
  ``file:tiny:<path>`` loads saved weights into it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hyperdomainnet.clip.preprocess import OPENAI_MEAN, OPENAI_STD, clip_preprocess
from hyperdomainnet.clip.templates import IMAGENET_TEMPLATES, fill_templates
from hyperdomainnet.errors import ConfigError, DownloadError, FileFormatError, first_line

OPENAI_NAMES: dict[str, str] = {
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
    "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}
TINY = "tiny"
TINY_CONFIG: dict = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DEFAULT_ENSEMBLE_SPEC = "ViT-B/32:1.0,ViT-B/16:1.0"
# open_clip's text tower: its modules, weights and buffers on the CLIP model (CustomTextCLIP: ``text``).
TEXT_TOWER = ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection", "attn_mask",
              "text")
_RANDOM_SEED = 0

Device = str | torch.device


class ClipEncoder:
    """A frozen CLIP model: differentiable image encoding, cached template text embeddings."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        embed_dim: int,
        antialias: bool = False,
        templates: Sequence[str] = IMAGENET_TEMPLATES,
    ) -> None:
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.embed_dim = embed_dim
        self.antialias = antialias
        self.templates = tuple(templates)
        cfg = getattr(model.visual, "preprocess_cfg", {})
        size = cfg.get("size", 224)
        self.input_size: int = size if isinstance(size, int) else int(size[0])
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", OPENAI_MEAN))
        self.std: tuple[float, ...] = tuple(cfg.get("std", OPENAI_STD))
        self._template_cache: dict[str, torch.Tensor] = {}
        self._text_released = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's weight precision (inputs are cast to it)."""
        return self.model.visual.conv1.weight.dtype

    def set_precision(self, precision: str) -> ClipEncoder:
        """``fp32``, ``fp16``, or ``auto`` (fp16 on CUDA, else fp32): OpenAI's own loader keeps
        the CLIP weights half on CUDA — convolutions, linear and attention weights and the
        projections in fp16, LayerNorms computing in fp32. Embeddings are returned as fp32. Set it once
        after loading: going back from fp16 to fp32 keeps the fp16-rounded weights."""
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        if precision == "fp16" and self.dtype != torch.float16:
            from open_clip.model import convert_weights_to_lp
            from open_clip.transformer import LayerNorm, LayerNormFp32

            convert_weights_to_lp(self.model, torch.float16)
            for module in self.model.modules():
                if type(module) is LayerNorm:
                    module.__class__ = LayerNormFp32
        elif precision == "fp32":
            self.model.float()
        self._template_cache.clear()
        return self

    def __repr__(self) -> str:
        return f"ClipEncoder({self.name!r}, embed_dim={self.embed_dim}, input_size={self.input_size})"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Generator output (B,3,H,W) in [-1, 1] → CLIP input (B,3,S,S); see ``clip_preprocess``."""
        images = images.to(self.device)
        return clip_preprocess(images, self.input_size, self.mean, self.std, self.antialias)

    def encode_images(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B,3,H,W) in [-1, 1] → (B,E) image embeddings, L2-normalised unless ``normalize=False``.

        Differentiable with respect to ``images``.
        """
        features = self.model.encode_image(self.preprocess(images).to(self.dtype)).float()
        return F.normalize(features, dim=-1) if normalize else features

    @property
    def has_text_tower(self) -> bool:
        return not self._text_released

    def release_text_tower(self) -> None:
        """Free the text tower's weights (63 M of ViT-B's 150 M parameters) once every prompt a run
        needs is encoded: ``template_embeddings`` still answers from its cache, ``encode_text`` of
        anything else raises."""
        for name in TEXT_TOWER:
            if getattr(self.model, name, None) is not None:
                setattr(self.model, name, None)
        self._text_released = True

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """N prompts → (N,E) text embeddings, no gradient; L2-normalised unless ``normalize=False``."""
        if self._text_released:
            raise RuntimeError(f"CLIP {self.name}'s text tower was released after the run's prompts were "
                               "encoded; load the encoder again to encode other prompts")
        tokens = self.tokenizer(list(texts)).to(self.device)
        features = self.model.encode_text(tokens).float()
        return F.normalize(features, dim=-1) if normalize else features

    def template_embeddings(self, text: str) -> torch.Tensor:
        """(T,E): each template filled with ``text``, each row L2-normalised; cached per text.

        The cached tensor is returned itself: do not modify it in place.
        """
        cached = self._template_cache.get(text)
        if cached is None:
            cached = self.encode_text(fill_templates(text, self.templates))
            self._template_cache[text] = cached
        return cached

    def text_direction(self, source: str, target: str) -> torch.Tensor:
        """(E,): Δt = mean_k (t_target,k − t_source,k) over templates, not re-normalised.

        The official HyperDomainNet losses use this unnormalised mean (StyleGAN-NADA normalises
        it); every loss compares directions by cosine, so the scale does not matter.
        """
        return (self.template_embeddings(target) - self.template_embeddings(source)).mean(dim=0)


def _file_error(spec: str, path: str, exc: BaseException) -> str:
    return (
        f"cannot load CLIP '{spec}': '{path}' is not a weights-only state dict for that "
        f"architecture ({type(exc).__name__}); save model.state_dict() with torch.save or safetensors"
    )


@contextmanager
def _seeded() -> Iterator[None]:
    """Seed random initialisation without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_SEED)
        yield


def _parse_spec(spec: str) -> tuple[str, str, str | None]:
    """Encoder spec → (architecture, source kind "tag" | "file" | "random", tag or path)."""
    kind, _, rest = spec.partition(":")
    if spec in OPENAI_NAMES:
        return OPENAI_NAMES[spec], "tag", "openai"
    if kind in ("open_clip", "file") and ":" in rest:
        arch, source = rest.split(":", 1)
        if arch and source:
            return arch, "tag" if kind == "open_clip" else "file", source
    if kind == "random" and rest:
        return rest, "random", None
    raise ConfigError(
        f"unknown CLIP encoder '{spec}'; use ViT-B/32, ViT-B/16, open_clip:<arch>:<tag>, "
        "file:<arch>:<path>, random:<arch> or random:tiny"
    )


def _build_tiny(spec: str, weights: str | None) -> torch.nn.Module:
    import open_clip

    with _seeded():
        model = open_clip.CLIP(**TINY_CONFIG)
    open_clip.set_model_preprocess_cfg(model, {
        "size": TINY_CONFIG["vision_cfg"]["image_size"], "mean": OPENAI_MEAN, "std": OPENAI_STD,
        "interpolation": "bicubic", "resize_mode": "shortest",
    })
    if weights is not None:
        try:
            open_clip.load_checkpoint(model, weights, weights_only=True)
        except Exception as exc:
            raise FileFormatError(_file_error(spec, weights, exc)) from exc
    return model


def _build_open_clip(spec: str, arch: str, kind: str, source: str | None) -> torch.nn.Module:
    import open_clip

    if arch not in open_clip.list_models():
        raise ConfigError(
            f"unknown CLIP architecture '{arch}' in '{spec}'; "
            "use one of open_clip.list_models() (e.g. ViT-B-32) or 'tiny'"
        )
    quick_gelu = False
    if kind == "tag":
        tag_cfg = open_clip.get_pretrained_cfg(arch, source)
        if not tag_cfg:
            known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)[:4]) or "none"
            raise ConfigError(
                f"unknown pretrained tag '{source}' in '{spec}'; tags for {arch} include {known}"
            )
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    try:
        if kind == "random":
            with _seeded():
                return open_clip.create_model(arch)
        return open_clip.create_model(
            arch, pretrained=source, force_quick_gelu=quick_gelu, weights_only=True,
            require_pretrained=True,
        )
    except Exception as exc:  # open_clip raises RuntimeError/OSError/KeyError variants
        if kind == "file":
            raise FileFormatError(_file_error(spec, str(source), exc)) from exc
        reason = first_line(exc, 200)
        if "download" in reason.lower():
            raise MissingClipWeights(spec, _how_to_supply(arch, str(source))) from exc
        raise DownloadError(
            f"cannot load CLIP '{spec}': {reason}; connect once so open_clip can cache the "
            "weights, or pass local weights as 'file:<arch>:<path>'"
        ) from exc


class MissingClipWeights(DownloadError):
    """Pretrained CLIP weights neither cached nor downloadable; ``how`` says how to supply them."""

    def __init__(self, spec: str, how: str) -> None:
        self.spec, self.how = spec, how
        super().__init__(f"cannot load CLIP '{spec}': the weights are not cached here and could not be "
                         f"downloaded; connect once so open_clip can cache them, or {how}")


def _how_to_supply(arch: str, tag: str) -> str:
    """Where the weights of ``arch``/``tag`` live and the ``file:`` spec that loads them once saved."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, name = os.path.split(hub)  # "org/model/" names open_clip's default file
        name = name or "open_clip_pytorch_model.bin"
        where = f"download {name} from https://huggingface.co/{repo}"
    else:
        name = Path(cfg.get("url", "weights.pt")).name
        where = f"download {name} from {cfg.get('url', 'the tag’s published location')}"
    return f"{where} and pass it as file:<arch>:<path>, here file:{arch}:/path/to/{name}"


def uncached_weights(spec: str) -> str | None:
    """How to supply the pretrained weights ``spec`` names when they are not in the local cache
    (open_clip's: the Hugging Face cache, or ~/.cache/clip for URL downloads), else None. No network."""
    arch, kind, tag = _parse_spec(spec.strip())
    if kind != "tag" or arch == TINY:
        return None
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(arch, str(tag))
    if not cfg:
        return None  # an unknown tag: load_clip says so
    repo, name = os.path.split(cfg.get("hf_hub", ""))
    if repo:
        names = [name, name[:-4] + ".safetensors"] if name.endswith((".bin", ".pth")) else [name]
        candidates = names if name else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(repo, n), str) for n in candidates):
            return None
    elif os.path.isfile(os.path.join(os.path.expanduser("~/.cache/clip"), Path(cfg.get("url", "")).name)):
        return None
    return _how_to_supply(arch, str(tag))


def _load_all(names: Sequence[str], device: Device, antialias: bool) -> list[ClipEncoder]:
    """Every encoder of an ensemble; missing weights are reported together, one line for all."""
    encoders, missing = [], []
    for name in names:
        try:
            encoders.append(load_clip(name, device, antialias))
        except MissingClipWeights as exc:
            missing.append(exc)
    if missing:
        raise DownloadError(f"{len(missing)} CLIP model(s) are not cached here and could not be downloaded: "
                            + "; ".join(f"{m.spec}: {m.how}" for m in missing)
                            + " — or connect once so open_clip can cache them")
    return encoders


def _tokenizer_for(spec: str, arch: str) -> Callable[[list[str]], torch.Tensor]:
    import open_clip

    if arch == TINY:
        return open_clip.SimpleTokenizer(context_length=TINY_CONFIG["text_cfg"]["context_length"])
    try:
        return open_clip.get_tokenizer(arch)
    except Exception as exc:
        raise DownloadError(
            f"cannot build the tokenizer for CLIP '{spec}': {first_line(exc, 200)}; "
            "connect once so it can be cached, or use a ViT-* architecture"
        ) from exc


def _embed_dim(arch: str) -> int:
    import open_clip

    config = TINY_CONFIG if arch == TINY else open_clip.get_model_config(arch)
    return int(config["embed_dim"])


def load_clip(spec: str, device: Device = "cpu", antialias: bool = False) -> ClipEncoder:
    """Build a frozen (eval, requires_grad False) :class:`ClipEncoder` from an encoder spec.

    ``antialias`` switches on antialiased bicubic downsampling in preprocessing (off in the
    official code). Raises ConfigError for unknown names, FileFormatError for unreadable weight
    files and DownloadError for weights that cannot be had.
    """
    spec = spec.strip()
    arch, kind, source = _parse_spec(spec)
    if kind == "file" and not os.path.isfile(str(source)):
        raise FileFormatError(f"CLIP weights file not found: '{source}'; check the path in '{spec}'")
    if arch == TINY:
        if kind == "tag":
            raise ConfigError(
                f"'{spec}': the tiny CLIP has no published weights; use random:tiny or file:tiny:<path>"
            )
        model = _build_tiny(spec, source)
    else:
        model = _build_open_clip(spec, arch, kind, source)
    return ClipEncoder(spec, model.to(device), _tokenizer_for(spec, arch), _embed_dim(arch), antialias)


def parse_ensemble_spec(spec: str) -> list[tuple[str, float]]:
    """``"ViT-B/32:1.0,ViT-B/16:1.0"`` → ``[("ViT-B/32", 1.0), ("ViT-B/16", 1.0)]``.

    A trailing ``:<number>`` is the weight (default 1.0); encoder specs may contain ``:``.
    """
    entries: list[tuple[str, float]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, weight = part, 1.0
        head, sep, tail = part.rpartition(":")
        if sep:
            try:
                weight = float(tail)
                name = head
            except ValueError:
                pass
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"CLIP weight must be a finite number >= 0, got '{part}'; e.g. ViT-B/32:1.0")
        if any(name == n for n, _ in entries):
            raise ConfigError(f"CLIP encoder '{name}' is listed twice in '{spec}'; list each encoder once")
        entries.append((name, weight))
    if not entries:
        raise ConfigError(f"no CLIP encoder in '{spec}'; give e.g. '{DEFAULT_ENSEMBLE_SPEC}'")
    return entries


@dataclass
class ClipEnsemble:
    """Weighted CLIP encoders; each loss is computed per encoder, weighted and summed."""

    members: list[tuple[ClipEncoder, float]]

    @classmethod
    def from_spec(
        cls, spec: str = DEFAULT_ENSEMBLE_SPEC, device: Device = "cpu", antialias: bool = False
    ) -> ClipEnsemble:
        """Load every encoder of a spec such as ``ViT-B/32:1.0,ViT-B/16:1.0`` or ``random:tiny``."""
        entries = parse_ensemble_spec(spec)
        encoders = _load_all([name for name, _ in entries], device, antialias)
        return cls([(encoder, w) for encoder, (_, w) in zip(encoders, entries)])

    @property
    def names(self) -> list[str]:
        return [encoder.name for encoder, _ in self.members]

    @property
    def spec(self) -> str:
        """The spec that rebuilds this ensemble."""
        return ",".join(f"{encoder.name}:{weight:g}" for encoder, weight in self.members)

    def __iter__(self) -> Iterator[tuple[ClipEncoder, float]]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def set_precision(self, precision: str) -> ClipEnsemble:
        """Every encoder's ``ClipEncoder.set_precision``."""
        for encoder, _ in self.members:
            encoder.set_precision(precision)
        return self

    def release_text_towers(self) -> None:
        """Every encoder's ``ClipEncoder.release_text_tower``."""
        for encoder, _ in self.members:
            encoder.release_text_tower()

    def __getitem__(self, name: str) -> ClipEncoder:
        for encoder, _ in self.members:
            if encoder.name == name:
                return encoder
        raise KeyError(name)
