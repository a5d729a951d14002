"""Import the checkpoints released with the official HyperDomainNet code (MACderRu/HyperDomainNet).

The official trainers save ``models_<step>.pt``: a pickled dict with

* ``model_type``: ``"parameterization"`` (one trained domain), ``"mapper"`` (a HyperDomainNet) or
  ``"original"`` (a fully fine-tuned generator);
* ``patch_key``: the parameterisation, ``"cin_mult"`` for domain modulation (δ over input channels,
  applied to the demodulated weight as W·(1 + δ));
* ``state_dict``: for ``cin_mult``, ``heads.conv_<l>.params_in`` of shape (1, 1, c_in, 1, 1) per
  modulated conv l (conv_0 = conv1, conv_l = convs[l − 1]; the first release named it
  ``ch_in_wise_shift``); for a mapper, the ``residual_channelin`` module's weights
  (``backbone.backbone.0.{lin,bn}``, ``backbone.backbone.<k>.{input_block,second_block}.{0,1}``,
  ``heads.conv_<l>.in.<j>…`` with the last ``heads.conv_<l>.in.<head_depth − 1>`` the output Linear);
* ``sg2_params`` (``sg_2_params`` in early code): the generator's constructor arguments
  (``img_size``, ``latent_size``, ``map_layers``, ``channel_multiplier``, ``checkpoint_path``);
* ``da_type``: ``"td"`` (text) or ``"im2im"`` (one reference image, with ``style_latents``, the
  reference's W+ codes used for layers 7+ at rendering);
* mapper only: ``mapper_config`` (a dict or a pickled OmegaConf DictConfig) and ``clip_encoder``.

Files are read by :func:`hyperdomainnet.torchfile.read_torch_file`. An OmegaConf config inside is rebuilt from
inert stand-in classes (an explicit allowlist of OmegaConf and typing names) and turned into plain
dicts; no code from the file runs and OmegaConf need not be installed. Any other pickled object is
refused with a one-line :class:`FileFormatError`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .domain.files import MIX_FROM, MIX_FROM_KEY, REFERENCE_LATENT, Domain
from .errors import ConfigError, FileFormatError, first_line
from .hashing import sha256_file
from .hypernet.model import HyperDomainNet
from .stylegan2.generator import Generator, GeneratorArch, layout_difference
from .torchfile import PickledStub, read_torch_file

MODEL_TYPES: tuple[str, ...] = ("parameterization", "mapper", "original")
DOMAIN_PATCH_KEY = "cin_mult"
MAPPER_TYPE = "residual_channelin"
DEFAULT_CLIP_MODEL = "ViT-B/32"
#: Globals an OmegaConf config pickles besides ``omegaconf.*`` classes (after torch's py2 mapping).
CONFIG_GLOBALS: frozenset[str] = frozenset({
    "typing.Any", "collections.defaultdict", "builtins.dict", "builtins.list", "builtins.int",
    "builtins.float", "builtins.str", "builtins.bool"})
OMEGACONF_PREFIX = "omegaconf."


@dataclass
class OfficialCheckpoint:
    """The contents of an official checkpoint, with configs as plain Python values."""

    path: Path
    model_type: str
    patch_key: str | None
    state_dict: dict[str, torch.Tensor]
    generator_args: dict[str, Any] = field(default_factory=dict)
    da_type: str | None = None
    mapper_config: dict[str, Any] | None = None
    clip_model: str | None = None
    style_latents: torch.Tensor | None = None


# ----- safe reading ------------------------------------------------------------------------------
def is_config_global(name: str) -> bool:
    """Whether a pickled global is part of an OmegaConf config (read as an inert stand-in)."""
    return name.startswith(OMEGACONF_PREFIX) or name in CONFIG_GLOBALS


def plain(obj: Any) -> Any:
    """Replace OmegaConf stand-ins by their values: DictConfig → dict, ListConfig → list, node → value."""
    if isinstance(obj, PickledStub):
        state = getattr(obj, "state", None)
        state = state if isinstance(state, dict) else {}
        if obj.pickled_name.endswith(("DictConfig", "ListConfig")):
            return plain(state.get("_content"))
        if "_val" in state:
            return plain(state["_val"])
        return obj.pickled_name
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj



def read_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Read an official ``.pt`` checkpoint safely and check its top-level structure."""
    path = Path(path)
    obj = plain(read_torch_file(path, "official HyperDomainNet checkpoint", stub=is_config_global))
    if not isinstance(obj, dict) or obj.get("model_type") not in MODEL_TYPES:
        found = (f"keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, dict)
                 else f"a {type(obj).__name__}")
        raise FileFormatError(f"{path} is not an official HyperDomainNet checkpoint (found {found}; expected "
                              f"'model_type' in {MODEL_TYPES} and 'state_dict')")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FileFormatError(f"{path} has no 'state_dict' of tensors; the file is incomplete")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    gen_args = obj.get("sg2_params", obj.get("sg_2_params")) or {}
    mapper_config = obj.get("mapper_config")
    latents = obj.get("style_latents")
    return OfficialCheckpoint(
        path=path, model_type=obj["model_type"], patch_key=obj.get("patch_key"), state_dict=state,
        generator_args=dict(gen_args) if isinstance(gen_args, dict) else {},
        da_type=obj.get("da_type"),
        mapper_config=dict(mapper_config) if isinstance(mapper_config, dict) else None,
        clip_model=obj.get("clip_encoder"),
        style_latents=latents if isinstance(latents, torch.Tensor) else None)


# ----- generator identity ------------------------------------------------------------------------
def official_arch(ckpt: OfficialCheckpoint, layout: list[int]) -> GeneratorArch:
    """The generator architecture named by ``sg2_params`` (size inferred from the layout if absent)."""
    args = ckpt.generator_args
    size = int(args.get("img_size") or 2 ** ((len(layout) - 1) // 2 + 2))
    return GeneratorArch(size=size, style_dim=int(args.get("latent_size") or 512),
                         n_mlp=int(args.get("map_layers") or 8),
                         channel_multiplier=int(args.get("channel_multiplier") or 2))


def generator_identity(ckpt: OfficialCheckpoint, layout: list[int], generator: Generator | None,
                       identify: Callable[[str], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """``generator.identity``; else ``identify(file)`` for the generator file the checkpoint names (the
    caller's registry), else that file's name with the architecture of ``sg2_params``.

    Raises ConfigError when the given generator's domain layout differs from the checkpoint's tensors.
    """
    if generator is not None:
        if list(generator.domain_layout) != layout:
            raise ConfigError(f"{ckpt.path.name} was trained on a generator of another layout "
                              f"({layout_difference(layout, generator.domain_layout)}); pass the generator it "
                              "was trained on")
        return dict(generator.identity)
    ref = ckpt.generator_args.get("checkpoint_path") or ckpt.generator_args.get("ckpt_path")
    name = Path(str(ref)).name if ref else None
    known = identify(name) if (name and identify is not None) else None
    if known is not None:
        arch = GeneratorArch.from_dict(known["arch"])
        name, sha256 = known["name"], known["sha256"]
    else:
        arch, sha256 = official_arch(ckpt, layout), None
    if arch.domain_layout() != layout:
        raise FileFormatError(f"{ckpt.path.name} names generator {name or arch.size} whose layout does not "
                              "match its tensors; pass the generator it was trained on (generator=...)")
    return {"name": name, "sha256": sha256, "arch": arch.to_dict()}


def provenance(ckpt: OfficialCheckpoint) -> dict[str, Any]:
    """Metadata recording where a converted file came from."""
    return {"file": ckpt.path.name, "sha256": sha256_file(ckpt.path), "model_type": ckpt.model_type,
            "patch_key": ckpt.patch_key, "da_type": ckpt.da_type,
            "generator_args": {k: v for k, v in ckpt.generator_args.items() if k != "device"}}


# ----- parameterization → domain file ------------------------------------------------------------
PARAM_KEY = re.compile(r"heads\.conv_(\d+)\.(?:params_in|ch_in_wise_shift)")


def indexed(keys: dict[int, Any], what: str, path: Path) -> list[Any]:
    """Values of a {layer index: value} map in index order, requiring indices 0…n−1."""
    if sorted(keys) != list(range(len(keys))) or not keys:
        raise FileFormatError(f"{path} has {what} for layers {sorted(keys)}; expected 0…n−1")
    return [keys[i] for i in range(len(keys))]


def domain_vector(ckpt: OfficialCheckpoint) -> tuple[torch.Tensor, list[int]]:
    """Flat δ (conv_0, conv_1, …) and its layout from a ``cin_mult`` state dict."""
    if ckpt.patch_key != DOMAIN_PATCH_KEY:
        raise FileFormatError(f"{ckpt.path} uses parameterisation {ckpt.patch_key!r}; only "
                              f"{DOMAIN_PATCH_KEY!r} (domain modulation) converts to a domain file")
    per_layer: dict[int, torch.Tensor] = {}
    for key, value in ckpt.state_dict.items():
        match = PARAM_KEY.fullmatch(key)
        if match is None:
            raise FileFormatError(f"{ckpt.path} has unexpected tensor {key!r} for a {DOMAIN_PATCH_KEY} checkpoint")
        per_layer[int(match.group(1))] = value.detach().float().reshape(-1)
    parts = indexed(per_layer, "domain vectors", ckpt.path)
    return torch.cat(parts), [p.numel() for p in parts]


def reference_tensors(ckpt: OfficialCheckpoint, identity: dict[str, Any]) -> tuple[dict[str, torch.Tensor],
                                                                                   dict[str, Any]]:
    """An image domain's ``style_latents`` (1, K, D) as the reference latent and its mixing rule: the
    research code replaces the last K W+ layers (K = 11 of 18 at 1024 px: layers 7 and up)."""
    if ckpt.style_latents is None:
        return {}, {}
    latents = ckpt.style_latents.detach().float().cpu()
    latents = latents[None] if latents.ndim == 2 else latents
    n_latent = 2 * int(math.log2(int(identity["arch"]["size"]))) - 2
    if latents.ndim != 3 or latents.shape[0] != 1 or not 0 < latents.shape[1] <= n_latent:
        raise FileFormatError(f"{ckpt.path} has style_latents of shape {tuple(ckpt.style_latents.shape)}; "
                              f"expected (1, K, D) with K ≤ {n_latent} W+ layers")
    first = n_latent - latents.shape[1] if latents.shape[1] < n_latent else MIX_FROM
    return {REFERENCE_LATENT: latents}, {MIX_FROM_KEY: first}


def convert_parameterization(ckpt: OfficialCheckpoint, out: Path, generator: Generator | None,
                             identify: Callable[[str], dict[str, Any] | None] | None) -> Path:
    vector, layout = domain_vector(ckpt)
    identity = generator_identity(ckpt, layout, generator, identify)
    tensors, rule = reference_tensors(ckpt, identity)
    domain = Domain(vector, "domain_vector", layout, identity, "after_demod",
                    {"official": provenance(ckpt), **rule}, tensors)
    return domain.save(out)


# ----- mapper → HyperDomainNet file --------------------------------------------------------------
BLOCK_PARTS = {"input_block.0": "fc1", "input_block.1": "norm1",
               "second_block.0": "fc2", "second_block.1": "norm2"}
BLOCK = r"(input_block\.[01]|second_block\.[01])\.(\w+)"
MAPPER_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"backbone\.backbone\.0\.lin\.(\w+)"), lambda m: f"stem.linear.{m[1]}"),
    (re.compile(r"backbone\.backbone\.0\.bn\.(\w+)"), lambda m: f"stem.norm.{m[1]}"),
    (re.compile(rf"backbone\.backbone\.(\d+)\.{BLOCK}"),
     lambda m: f"blocks.{int(m[1]) - 1}.{BLOCK_PARTS[m[2]]}.{m[3]}"),
    (re.compile(rf"heads\.conv_(\d+)\.in\.(\d+)\.{BLOCK}"),
     lambda m: f"heads.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}"),
    (re.compile(r"heads\.conv_(\d+)\.in\.(\d+)\.(weight|bias)"), lambda m: f"heads.{m[1]}.out.{m[3]}"),
)


def mapper_key(key: str, path: Path) -> str:
    """Our module name for an official ``residual_channelin`` state-dict key."""
    for pattern, rename in MAPPER_RULES:
        match = pattern.fullmatch(key)
        if match is not None:
            return rename(match)
    raise FileFormatError(f"{path} has unexpected mapper tensor {key!r}; expected a {MAPPER_TYPE} mapper "
                          "with a shared backbone")


def check_mapper_config(ckpt: OfficialCheckpoint) -> None:
    config = ckpt.mapper_config or {}
    expected = {"mapper_type": MAPPER_TYPE, "backbone_type": "shared", "activation": "relu"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise FileFormatError(f"{ckpt.path} holds a mapper with {key} {config[key]!r}; only {key} "
                                  f"{value!r} (the released HyperDomainNet) converts")


def hypernet_from_official(ckpt: OfficialCheckpoint) -> HyperDomainNet:
    """A HyperDomainNet with the mapper's weights; architecture read from the tensor shapes."""
    check_mapper_config(ckpt)
    state = {mapper_key(k, ckpt.path): v for k, v in ckpt.state_dict.items()}
    outs = {int(m[1]): v.shape[0] for k, v in state.items()
            if (m := re.fullmatch(r"heads\.(\d+)\.out\.weight", k))}
    layout = indexed(outs, "mapper heads", ckpt.path)
    stem = state.get("stem.linear.weight")
    if stem is None or stem.ndim != 2:
        raise FileFormatError(f"{ckpt.path} lacks the mapper's input layer backbone.backbone.0.lin.weight")
    depth = 1 + len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    head_depth = 1 + len({k.split(".")[3] for k in state if k.startswith("heads.0.blocks.")})
    net = HyperDomainNet(layout, embed_dim=stem.shape[1], width=stem.shape[0], depth=depth,
                         head_depth=head_depth)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FileFormatError(f"{ckpt.path} does not fit a HyperDomainNet of its own shapes "
                              f"({first_line(exc)})") from None
    return net.eval()


def convert_mapper(ckpt: OfficialCheckpoint, out: Path, generator: Generator | None,
                   identify: Callable[[str], dict[str, Any] | None] | None) -> Path:
    if ckpt.patch_key not in (None, DOMAIN_PATCH_KEY):
        raise FileFormatError(f"{ckpt.path} is a mapper for parameterisation {ckpt.patch_key!r}; only "
                              f"{DOMAIN_PATCH_KEY!r} converts")
    net = hypernet_from_official(ckpt)
    meta = {"clip_model": ckpt.clip_model or DEFAULT_CLIP_MODEL,
            "input": "image" if ckpt.da_type == "im2im" else "text",
            "generator": generator_identity(ckpt, net.domain_layout, generator, identify),
            "official": {**provenance(ckpt), "mapper_config": ckpt.mapper_config}}
    return net.save(out, meta)


def convert_official(path: str | Path, out: str | Path, generator: Generator | None = None,
                     identify: Callable[[str], dict[str, Any] | None] | None = None) -> Path:
    """Convert an official checkpoint: ``parameterization`` → domain file, ``mapper`` → HyperDomainNet.

    ``generator`` (a loaded Generator) supplies the identity recorded in the output; without it
    ``identify`` (the caller's registry, e.g. :func:`hyperdomainnet.zoo.generator_identity`) maps the
    generator file named in ``sg2_params`` to its identity. Returns ``out``.
    """
    ckpt = read_official_checkpoint(path)
    out = Path(out)
    if ckpt.model_type == "parameterization":
        return convert_parameterization(ckpt, out, generator, identify)
    if ckpt.model_type == "mapper":
        return convert_mapper(ckpt, out, generator, identify)
    raise FileFormatError(f"{ckpt.path} holds a fully fine-tuned generator (model_type 'original'); only "
                          "'parameterization' and 'mapper' checkpoints convert")
