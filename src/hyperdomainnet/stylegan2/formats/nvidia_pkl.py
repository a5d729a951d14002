"""NVIDIA stylegan2-ada-pytorch / stylegan3 ``.pkl`` generators, read safely into rosinality layout
(StyleGAN2) or the project's StyleGAN3 layout (``hyperdomainnet.stylegan3.nvidia``).

Such a pickle is ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}``. NVIDIA's
``torch_utils.persistence`` stores every network as a call to ``_reconstruct_persistent_obj(meta)``
whose ``meta`` carries the Python source of the network's module (``module_src``), the class name
and the object's ``__dict__`` (parameters, buffers, sub-modules, attributes, init kwargs). Plain
unpickling needs NVIDIA's packages and *executes* that source. Here a restricted unpickler
resolves only an explicit allowlist of globals; the persistence hook becomes a plain record
(class name + state) and ``module_src`` is never looked at. Any other global is refused.

Conversion to rosinality's ``g_ema`` keys (checked numerically against both code bases):
``mapping.fc<i>`` → ``style.<i+1>``; ``b4.const`` → ``input.input``; ``b4.conv1``/``b4.torgb`` →
``conv1``/``to_rgb1``; ``b<r>.conv0``, ``b<r>.conv1``, ``b<r>.torgb`` → ``convs.<2k>``,
``convs.<2k+1>``, ``to_rgbs.<k>``; ``noise_const`` → ``noises.noise_<n>`` in the same order;
``noise_strength`` → ``noise.weight``; ``affine`` → ``conv.modulation`` (both store the bias
with its init 1 included); ``bias`` → ``activate.bias`` / ``bias``. Weights are taken as they are:
NVIDIA's up-sampling conv (``flip_weight=False`` with a transposed convolution) computes exactly
rosinality's ``conv_transpose2d``, so no flip is needed. ``conv_clamp`` (clamp after bias +
lrelu·√2 and after the toRGB bias) is returned in ``arch`` for the generator to apply.
"""
from __future__ import annotations

import io
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ...errors import FileFormatError, HDNError, first_line
from ...pickle_bounds import check_legacy, check_pickle_file

ROSINALITY_GAIN = 4.0  # rosinality's up-sampling kernels are NVIDIA's normalised filter × up²
STANDARD_FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])
NOT_PLAIN = "the file is not a plain NVIDIA StyleGAN2 checkpoint"
SUPPORTED = ("supported: unconditional StyleGAN2 generators (stylegan2-ada-pytorch / stylegan3 "
             "'stylegan2' config) with the 'skip' architecture, and StyleGAN3 T / R generators")


@dataclass
class NvidiaCheckpoint:
    """Generator weights in rosinality ``g_ema`` layout, the tracked mean w, and the architecture.

    ``arch`` keys: size, style_dim, n_mlp, channel_multiplier, channel_max, lr_mlp, conv_clamp
    (the arguments of ``hyperdomainnet.stylegan2.Generator``); for a StyleGAN3 generator,
    ``StyleGAN3Arch.to_dict()`` (``family`` "stylegan3") and ``StyleGAN3Generator`` keys.
    """

    state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor
    arch: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Persistent:
    """What ``_reconstruct_persistent_obj`` would have rebuilt, as inert (immutable) data."""

    class_name: str
    state: dict[str, Any]

    def modules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def module(self, name: str) -> _Persistent:
        sub = self.modules().get(name)
        if not isinstance(sub, _Persistent):
            raise FileFormatError(f"{self.class_name} has no sub-network {name!r}; {NOT_PLAIN}")
        return sub

    def tensor(self, name: str) -> torch.Tensor:
        found = {**(self.state.get("_buffers") or {}), **(self.state.get("_parameters") or {})}.get(name)
        if not isinstance(found, torch.Tensor):
            raise FileFormatError(f"{self.class_name} lacks tensor {name!r}; {NOT_PLAIN}")
        return found.detach().to(torch.float32)

    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def attr(self, name: str) -> Any:
        if name not in self.state:
            raise FileFormatError(f"{self.class_name} lacks attribute {name!r}; {NOT_PLAIN}")
        return self.state[name]


# ----- restricted unpickling -------------------------------------------------------------------

def _reconstruct_persistent(meta: Any) -> _Persistent:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: no code is run."""
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)):
        raise FileFormatError(f"malformed persistent object record; {NOT_PLAIN}")
    return _Persistent(meta["class_name"], meta["state"])


def _load_storage(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: a weights-only ``torch.load``, bounded first."""
    check_legacy(io.BytesIO(data), "a tensor storage in the pickle")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                    backward_hooks: Any, metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a CPU storage, dropping autograd flags and hooks."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise FileFormatError(f"tensor without a tensor storage; {NOT_PLAIN}")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict(), metadata)


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter`` → the plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise FileFormatError(f"parameter without tensor data; {NOT_PLAIN}")
    return data


def _numpy_scalar(dtype: Any, data: bytes) -> Any:
    """``numpy.core.multiarray.scalar`` for plain (non-object) dtypes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise FileFormatError(f"unsupported numpy scalar; {NOT_PLAIN}")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: a placeholder that the pickled state then fills."""
    if subtype is not np.ndarray:
        raise FileFormatError(f"unsupported numpy array type; {NOT_PLAIN}")
    return np.empty(0, dtype=np.uint8)


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
REFUSAL_HINTS = {
    ("dnnlib.tflib.network", "Network"): "it is a TensorFlow StyleGAN2 pickle; convert it with "
                                         "stylegan2-ada-pytorch's legacy.py first",
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS``; everything else is refused before it can run."""

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            hint = REFUSAL_HINTS.get((module, name), NOT_PLAIN)
            raise FileFormatError(f"refused to load global {module}.{name}: {hint}")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise FileFormatError(f"unexpected persistent id in the pickle; {NOT_PLAIN}")


def _unpickle(path: str | os.PathLike[str]) -> Any:
    """Load the pickle with the restricted unpickler; every failure becomes a one-line FileFormatError."""
    check_pickle_file(path)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh).load()
    except HDNError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 — any decoding failure means a damaged file
        detail = first_line(exc, 120, "no detail")
        raise FileFormatError(f"{path} is not a readable pickle ({type(exc).__name__}: {detail}); "
                              "is it truncated or corrupt? Download it again") from None


# ----- structure checks ------------------------------------------------------------------------

def _pick_generator(data: Any) -> _Persistent:
    """``G_ema`` (else ``G``) from the top-level dict."""
    if isinstance(data, dict):
        for key in ("G_ema", "G"):
            if isinstance(data.get(key), _Persistent):
                return data[key]
    found = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else \
        type(data).__name__
    raise FileFormatError(f"found {found} without a 'G_ema' or 'G' network; {NOT_PLAIN}")


def is_stylegan3(synthesis: _Persistent) -> bool:
    """A StyleGAN3 synthesis network: an ``input`` and layers named ``L<idx>_<size>_<channels>``."""
    names = list(synthesis.modules())
    return "input" in names and any(re.fullmatch(r"L\d+_\d+_\d+", n) for n in names)


def _block_resolutions(synthesis: _Persistent) -> list[int]:
    """Resolutions of the ``b4 … b<size>`` blocks, or an error naming what the network is."""
    names = list(synthesis.modules())
    if not all(re.fullmatch(r"b\d+", n) for n in names):
        raise FileFormatError(f"found an unknown synthesis network (layers {', '.join(names[:3])}, …); {SUPPORTED}")
    res = sorted(int(n[1:]) for n in names)
    if len(res) < 2 or res != [2 ** (i + 2) for i in range(len(res))]:
        raise FileFormatError(f"found synthesis blocks {names}; {SUPPORTED}, from 4 px up to at least 8 px")
    return res


def _check_generator(G: _Persistent) -> tuple[_Persistent, _Persistent, list[int]]:
    """(mapping, synthesis, block resolutions) of a supported generator, else a one-line error."""
    if G.class_name != "Generator" or not {"mapping", "synthesis"} <= set(G.modules()):
        raise FileFormatError(f"found a network of class {G.class_name!r}; {SUPPORTED}")
    mapping, synthesis = G.module("mapping"), G.module("synthesis")
    _check_mapping(mapping)
    res = _block_resolutions(synthesis)
    for r in res:
        architecture = synthesis.module(f"b{r}").attr("architecture")
        if architecture != "skip":
            raise FileFormatError(f"found a generator with the {architecture!r} architecture; {SUPPORTED}")
    for layer in _mapping_layers(mapping) + _conv_layers(synthesis, res):
        if layer.attr("activation") != "lrelu":
            raise FileFormatError(f"found activation {layer.attr('activation')!r}; {SUPPORTED} and leaky ReLU")
    return mapping, synthesis, res


def _check_mapping(mapping: _Persistent) -> None:
    """An unconditional mapping network with at least one layer."""
    if not _mapping_layers(mapping):
        raise FileFormatError(f"found a mapping network without layers; {NOT_PLAIN}")
    c_dim = mapping.init_kwargs().get("c_dim", 0)
    if c_dim or "embed" in mapping.modules():
        raise FileFormatError(f"found a class-conditional generator (c_dim={c_dim}); {SUPPORTED}")


def _mapping_layers(mapping: _Persistent) -> list[_Persistent]:
    """``fc0 … fc<n-1>`` of the mapping network."""
    n = sum(1 for name in mapping.modules() if re.fullmatch(r"fc\d+", name))
    return [mapping.module(f"fc{i}") for i in range(n)]


def _conv_layers(synthesis: _Persistent, res: list[int]) -> list[_Persistent]:
    """The 3×3 SynthesisLayers in W+ order: b4.conv1, b8.conv0, b8.conv1, …"""
    return [synthesis.module(f"b{r}").module(name) for r in res for name in ("conv0", "conv1")
            if r > 4 or name == "conv1"]


def _check_filters(synthesis: _Persistent, res: list[int]) -> None:
    """All resampling filters must be the standard normalised [1, 3, 3, 1] outer product."""
    expected = torch.outer(STANDARD_FILTER, STANDARD_FILTER) / STANDARD_FILTER.sum() ** 2
    for r in res[1:]:
        block = synthesis.module(f"b{r}")
        for f in (block.tensor("resample_filter"), block.module("conv0").tensor("resample_filter")):
            if f.shape != expected.shape or not torch.allclose(f, expected):
                raise FileFormatError(f"found a resampling filter other than [1, 3, 3, 1]; {SUPPORTED}")


# ----- architecture ------------------------------------------------------------------------------

def _rosinality_channels(res: int, channel_multiplier: int, channel_max: int) -> int:
    """rosinality's channels per resolution (512 up to 32 px, then 2^14·cm/res), capped."""
    return min(512 if res <= 32 else 2**14 * channel_multiplier // res, channel_max)


def _single_value(values: list[Any], what: str) -> Any:
    """The value all layers share, else an error."""
    if any(v != values[0] for v in values):
        raise FileFormatError(f"layers disagree on {what} ({sorted(set(map(str, values)))}); {SUPPORTED}")
    return values[0]


def _infer_arch(mapping: _Persistent, synthesis: _Persistent, res: list[int]) -> dict[str, Any]:
    """Architecture from init kwargs and layer attributes (shapes are checked after conversion)."""
    kwargs = synthesis.init_kwargs()
    channel_base, channel_max = int(kwargs.get("channel_base", 32768)), int(kwargs.get("channel_max", 512))
    if channel_base % 2**14 or channel_base < 2**14:
        raise FileFormatError(f"found channel_base {channel_base}; supported: 16384·k (channel multiplier k)")
    fcs = _mapping_layers(mapping)
    to_rgbs = [synthesis.module(f"b{r}").module("torgb") for r in res]
    clamp = _single_value([layer.attr("conv_clamp") for layer in _conv_layers(synthesis, res) + to_rgbs],
                          "conv_clamp")
    return {
        "size": res[-1],
        "style_dim": int(mapping.tensor("w_avg").shape[0]),
        "n_mlp": len(fcs),
        "channel_multiplier": channel_base // 2**14,
        "channel_max": channel_max,
        "lr_mlp": float(_single_value([float(fc.attr("bias_gain")) for fc in fcs], "lr_multiplier")),
        "conv_clamp": None if clamp is None else float(clamp),
    }


def _expected_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every rosinality ``g_ema`` key of this architecture and its shape."""
    dim, cm, cmax = arch["style_dim"], arch["channel_multiplier"], arch["channel_max"]
    ch = {r: _rosinality_channels(r, cm, cmax) for r in (2 ** i for i in range(2, arch["size"].bit_length()))}
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, arch["n_mlp"] + 1):
        shapes.update({f"style.{i}.weight": (dim, dim), f"style.{i}.bias": (dim,)})
    shapes["input.input"] = (1, ch[4], 4, 4)

    def styled(prefix: str, c_in: int, c_out: int, up: bool) -> None:
        shapes.update({f"{prefix}.conv.weight": (1, c_out, c_in, 3, 3), f"{prefix}.conv.modulation.weight":
                       (c_in, dim), f"{prefix}.conv.modulation.bias": (c_in,), f"{prefix}.noise.weight": (1,),
                       f"{prefix}.activate.bias": (c_out,)})
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)

    def to_rgb(prefix: str, c_in: int, up: bool) -> None:
        shapes.update({f"{prefix}.conv.weight": (1, 3, c_in, 1, 1), f"{prefix}.conv.modulation.weight":
                       (c_in, dim), f"{prefix}.conv.modulation.bias": (c_in,),
                       f"{prefix}.bias": (1, 3, 1, 1)})
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    for k, r in enumerate(sorted(ch)[1:]):
        styled(f"convs.{2 * k}", ch[r // 2], ch[r], True)
        styled(f"convs.{2 * k + 1}", ch[r], ch[r], False)
        to_rgb(f"to_rgbs.{k}", ch[r], True)
    for n, r in enumerate([4] + [r for r in sorted(ch)[1:] for _ in range(2)]):
        shapes[f"noises.noise_{n}"] = (1, 1, r, r)
    return shapes


# ----- conversion --------------------------------------------------------------------------------

def _styled_conv(layer: _Persistent, prefix: str, up: bool) -> dict[str, torch.Tensor]:
    """NVIDIA SynthesisLayer → rosinality StyledConv (+ blur kernel when it up-samples)."""
    out = {f"{prefix}.conv.weight": layer.tensor("weight")[None],
           f"{prefix}.conv.modulation.weight": layer.module("affine").tensor("weight"),
           f"{prefix}.conv.modulation.bias": layer.module("affine").tensor("bias"),
           f"{prefix}.noise.weight": layer.tensor("noise_strength").reshape(1),
           f"{prefix}.activate.bias": layer.tensor("bias")}
    if up:
        out[f"{prefix}.conv.blur.kernel"] = layer.tensor("resample_filter") * ROSINALITY_GAIN
    return out


def _to_rgb(block: _Persistent, prefix: str, up: bool) -> dict[str, torch.Tensor]:
    """NVIDIA ToRGBLayer → rosinality ToRGB (+ skip up-sampling kernel after 4 px)."""
    layer = block.module("torgb")
    out = {f"{prefix}.conv.weight": layer.tensor("weight")[None],
           f"{prefix}.conv.modulation.weight": layer.module("affine").tensor("weight"),
           f"{prefix}.conv.modulation.bias": layer.module("affine").tensor("bias"),
           f"{prefix}.bias": layer.tensor("bias").reshape(1, -1, 1, 1)}
    if up:
        out[f"{prefix}.upsample.kernel"] = block.tensor("resample_filter") * ROSINALITY_GAIN
    return out


def _convert(mapping: _Persistent, synthesis: _Persistent, res: list[int],
             n_mlp: int) -> dict[str, torch.Tensor]:
    """All generator tensors under rosinality ``g_ema`` keys."""
    sd: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        fc = mapping.module(f"fc{i}")
        sd.update({f"style.{i + 1}.weight": fc.tensor("weight"), f"style.{i + 1}.bias": fc.tensor("bias")})
    b4 = synthesis.module("b4")
    sd["input.input"] = b4.tensor("const")[None]
    sd.update(_styled_conv(b4.module("conv1"), "conv1", up=False))
    sd.update(_to_rgb(b4, "to_rgb1", up=False))
    noises = [b4.module("conv1").tensor("noise_const")]
    for k, r in enumerate(res[1:]):
        block = synthesis.module(f"b{r}")
        sd.update(_styled_conv(block.module("conv0"), f"convs.{2 * k}", up=True))
        sd.update(_styled_conv(block.module("conv1"), f"convs.{2 * k + 1}", up=False))
        sd.update(_to_rgb(block, f"to_rgbs.{k}", up=True))
        noises += [block.module("conv0").tensor("noise_const"), block.module("conv1").tensor("noise_const")]
    sd.update({f"noises.noise_{n}": noise[None, None] for n, noise in enumerate(noises)})
    return {k: v.contiguous() for k, v in sd.items()}


def _check_shapes(sd: dict[str, torch.Tensor], arch: dict[str, Any]) -> None:
    """The converted tensors must be exactly rosinality's layout for ``arch``."""
    for key, shape in _expected_shapes(arch).items():
        if tuple(sd[key].shape) != shape:
            raise FileFormatError(f"tensor {key} has shape {tuple(sd[key].shape)}, expected {shape} for "
                                  f"architecture {arch}; {SUPPORTED}")


def _read_stylegan3(G: _Persistent) -> NvidiaCheckpoint:
    """A StyleGAN3 generator record → its weights in ``StyleGAN3Generator`` keys and architecture."""
    from ...stylegan3.nvidia import convert_stylegan3

    _check_mapping(G.module("mapping"))
    state_dict, latent_avg, arch = convert_stylegan3(G)
    return NvidiaCheckpoint(state_dict, latent_avg, arch.to_dict())


def read_nvidia_pickle(path: str | os.PathLike[str]) -> NvidiaCheckpoint:
    """Read the StyleGAN2 or StyleGAN3 generator (``G_ema``, else ``G``) of an NVIDIA ``.pkl``
    without running its code (StyleGAN3: ``hyperdomainnet.stylegan3.nvidia``).

    Raises ``FileFormatError`` (one line) for refused globals, damaged files and unsupported generators.
    """
    data = _unpickle(path)
    try:
        G = _pick_generator(data)
        if G.class_name == "Generator" and "synthesis" in G.modules() and is_stylegan3(G.module("synthesis")):
            return _read_stylegan3(G)
        mapping, synthesis, res = _check_generator(G)
        _check_filters(synthesis, res)
        arch = _infer_arch(mapping, synthesis, res)
        state_dict = _convert(mapping, synthesis, res, arch["n_mlp"])
        _check_shapes(state_dict, arch)
        latent_avg = mapping.tensor("w_avg").clone()
    except HDNError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    return NvidiaCheckpoint(state_dict, latent_avg, arch)
