"""NVIDIA StyleGAN3 generators (``training/networks_stylegan3.py``) from the inert records of the
restricted pickle reader (``stylegan2.formats.nvidia_pkl``), into ``StyleGAN3Generator`` keys.

Keys: ``mapping.fc<i>`` → ``style.<i+1>``; ``mapping.w_avg`` → the mean latent;
``synthesis.input.{weight, affine.*, transform, freqs, phases}`` → ``input.*``;
``synthesis.L<idx>_<size>_<channels>.{weight, bias, magnitude_ema, affine.*}`` → ``layers.<idx>.*``.
The architecture comes from the synthesis network's init kwargs (NVIDIA's defaults where absent);
it is then checked against what the file stores: layer names (sizes, channels) and the designed
up/down-sampling filters, so a network built differently is refused instead of rendered wrong.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import FileFormatError
from .generator import CONFIGS, StyleGAN3Arch

SUPPORTED_SG3 = "supported: unconditional StyleGAN3 generators of the T and R configs (NVIDIA's defaults)"
FIXED_KWARGS = {"img_channels": 3, "filter_size": 6, "lrelu_upsampling": 2}  # what the design assumes
ARCH_KWARGS = {"num_layers": int, "num_critical": int, "margin_size": int, "output_scale": float,
               "first_cutoff": float, "first_stopband": float, "last_stopband_rel": float}


def stylegan3_arch(G: Any) -> StyleGAN3Arch:
    """Architecture of an NVIDIA StyleGAN3 ``Generator`` record (mapping and synthesis checked)."""
    mapping, synthesis = G.module("mapping"), G.module("synthesis")
    kwargs = {**G.init_kwargs(), **synthesis.init_kwargs()}
    for key, value in FIXED_KWARGS.items():
        if key in kwargs and kwargs[key] != value:
            raise FileFormatError(f"found {key}={kwargs[key]}; {SUPPORTED_SG3}")
    kernel, radial = int(kwargs.get("conv_kernel", 3)), bool(kwargs.get("use_radial_filters", False))
    configs = [name for name, c in CONFIGS.items() if (c["conv_kernel"], c["radial"]) == (kernel, radial)]
    if not configs:
        raise FileFormatError(f"found conv_kernel={kernel} with use_radial_filters={radial}; {SUPPORTED_SG3}")
    fcs = _fcs(mapping)
    clamp = kwargs.get("conv_clamp", 256)
    return StyleGAN3Arch(
        size=int(kwargs["img_resolution"]), config=configs[0], style_dim=int(mapping.tensor("w_avg").shape[0]),
        n_mlp=len(fcs), channel_base=int(kwargs.get("channel_base", 32768)),
        channel_max=int(kwargs.get("channel_max", 512)), lr_mlp=float(fcs[0].attr("bias_gain")),
        conv_clamp=None if clamp is None else float(clamp),
        **{k: cast(kwargs[k]) for k, cast in ARCH_KWARGS.items() if k in kwargs})


def _fcs(mapping: Any) -> list[Any]:
    n = sum(1 for name in mapping.modules() if re.fullmatch(r"fc\d+", name))
    if n == 0:
        raise FileFormatError(f"found a mapping network without layers; {SUPPORTED_SG3}")
    return [mapping.module(f"fc{i}") for i in range(n)]


def _layer_names(synthesis: Any) -> list[str]:
    names = [n for n in synthesis.modules() if re.fullmatch(r"L\d+_\d+_\d+", n)]
    return sorted(names, key=lambda n: int(n[1:].split("_")[0]))


def convert_stylegan3(G: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, StyleGAN3Arch]:
    """(state dict in ``StyleGAN3Generator`` keys, mean latent, architecture) of a record."""
    arch = stylegan3_arch(G)
    mapping, synthesis = G.module("mapping"), G.module("synthesis")
    designs = arch.design().layers()
    names = _layer_names(synthesis)
    expected = [f"L{i}_{d.out_size}_{d.out_channels}" for i, d in enumerate(designs)]
    if names != expected:
        raise FileFormatError(f"found layers {names[:2]}…{names[-1:]}, expected {expected[:2]}…{expected[-1:]} "
                              f"for {arch.config.upper()} at {arch.size} px; {SUPPORTED_SG3}")
    sd: dict[str, torch.Tensor] = {}
    for i, fc in enumerate(_fcs(mapping)):
        sd.update({f"style.{i + 1}.weight": fc.tensor("weight"), f"style.{i + 1}.bias": fc.tensor("bias")})
    inp = synthesis.module("input")
    sd.update({"input.weight": inp.tensor("weight"), "input.affine.weight": inp.module("affine").tensor("weight"),
               "input.affine.bias": inp.module("affine").tensor("bias"), "input.transform": inp.tensor("transform"),
               "input.freqs": inp.tensor("freqs"), "input.phases": inp.tensor("phases")})
    for i, (name, design) in enumerate(zip(names, designs)):
        layer = synthesis.module(name)
        _check_filter(layer, "up_filter", design.up_filter(), name)
        _check_filter(layer, "down_filter", design.down_filter(), name)
        sd.update({f"layers.{i}.weight": layer.tensor("weight"), f"layers.{i}.bias": layer.tensor("bias"),
                   f"layers.{i}.magnitude_ema": layer.tensor("magnitude_ema").reshape(()),
                   f"layers.{i}.affine.weight": layer.module("affine").tensor("weight"),
                   f"layers.{i}.affine.bias": layer.module("affine").tensor("bias")})
    return {k: v.contiguous() for k, v in sd.items()}, mapping.tensor("w_avg").clone(), arch


def _check_filter(layer: Any, name: str, designed: torch.Tensor | None, layer_name: str) -> None:
    """The stored filter (absent or None for the identity) must be the one designed here."""
    stored = (layer.state.get("_buffers") or {}).get(name)
    if designed is None and stored is None:
        return
    if designed is None or stored is None or tuple(stored.shape) != tuple(designed.shape) \
            or not torch.allclose(stored.float(), designed, atol=1e-6):
        raise FileFormatError(f"{layer_name}.{name} differs from the filter its cutoffs define; {SUPPORTED_SG3}")
