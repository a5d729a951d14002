"""Released encoder checkpoints (ReStyle's and encoder4editing's, one layout):
``{"state_dict", "opts", "latent_avg"}`` read by :func:`hyperdomainnet.torchfile.read_torch_file`.

* ``state_dict``: ``encoder.*`` (the network) and ``decoder.*`` (a rosinality StyleGAN2
  generator, noise buffers included);
* ``opts``: a plain dict (the training options). ``encoder_type`` names the network:
  "BackboneEncoder" → ReStyle pSp, "ProgressiveBackboneEncoder" → ReStyle e4e (both a
  :class:`ReStyleNet` with 6 input channels), "Encoder4Editing" → encoder4editing's single-pass
  e4e (an :class:`Encoder4EditingNet`, 3 input channels); the tensors must agree with it, and
  the decoder's size with ``output_size`` (ReStyle) or ``stylegan_size`` (encoder4editing);
* ``latent_avg``: the W+ start code, (n_styles, 512) or one (512,) code for every entry.

Every other layout is a one-line :class:`FileFormatError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import FileFormatError, HDNError
from ..stylegan2.formats.rosinality import GeneratorCheckpoint, infer_arch as infer_generator_arch
from ..stylegan2.generator import Generator
from ..stylegan2.loading import generator_from_checkpoint
from ..torchfile import read_torch_file
from .encoder4editing import KIND as E4E_KIND, Encoder4EditingNet
from .network import ENCODER_TYPES, EncoderArch, ReStyleNet, infer_arch

ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."
ENCODER_NAMES = "restyle-psp-ffhq, restyle-e4e-ffhq, e4e-ffhq"
Net = ReStyleNet | Encoder4EditingNet


def network_class(kind: str) -> type[Net]:
    """The module class of an encoder kind."""
    return Encoder4EditingNet if kind == E4E_KIND else ReStyleNet


def input_channels(kind: str) -> int:
    """3 for encoder4editing (the photo), 6 for ReStyle (photo ‖ current reconstruction)."""
    return 3 if kind == E4E_KIND else 6


@dataclass
class EncoderCheckpoint:
    """A loaded encoder checkpoint: encoder network, decoder generator, W+ start code, options."""

    net: Net
    generator: Generator
    latent_avg: torch.Tensor
    opts: dict[str, Any]


def _check_layout(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.Tensor]:
    if isinstance(obj, dict) and "g_ema" in obj:
        raise FileFormatError(f"{path} is a StyleGAN2 generator checkpoint, not an encoder; pass it with "
                              "--generator, and an encoder checkpoint (or restyle-psp-ffhq) with --encoder")
    if not (isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
            and isinstance(obj.get("opts"), dict) and isinstance(obj.get("latent_avg"), torch.Tensor)):
        found = f"a dict with keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, dict) else \
            f"a {type(obj).__name__}"
        raise FileFormatError(f"{path} is {found}, not an encoder checkpoint (state_dict, opts, latent_avg); "
                              f"pass {ENCODER_NAMES} or such a file")
    return obj["state_dict"], obj["opts"], obj["latent_avg"]


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)}


def read_encoder_checkpoint(path: str | Path) -> EncoderCheckpoint:
    """Read and check an encoder checkpoint (module docstring); the models come back in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"encoder file {path} does not exist or is not a file; pass an encoder "
                              f"checkpoint or a zoo name ({ENCODER_NAMES})")
    if path.suffix == ".safetensors":
        raise FileFormatError(f"{path} is a safetensors file (a domain or hypernetwork?), not an encoder "
                              "checkpoint")
    state, opts, latent_avg = _check_layout(read_torch_file(path, "encoder checkpoint"), path)
    encoder_type = opts.get("encoder_type")
    if encoder_type not in ENCODER_TYPES:
        held = f"a {encoder_type!r} encoder" if encoder_type else "an encoder whose opts name no encoder_type"
        raise FileFormatError(f"{path} holds {held}; supported: {', '.join(ENCODER_TYPES)} (the IR-SE50 "
                              "ReStyle pSp and e4e, and encoder4editing's e4e)")
    encoder_state = _split(state, ENCODER_PREFIX)
    kind = ENCODER_TYPES[encoder_type]
    arch = infer_arch(encoder_state, kind, str(path))
    needed = input_channels(kind)
    if opts.get("input_nc", arch.input_nc) != arch.input_nc or arch.input_nc != needed:
        raise FileFormatError(f"{path} is a {encoder_type} with {arch.input_nc} input channels (opts say "
                              f"{opts.get('input_nc')}); that network reads {needed}")
    with torch.device("meta"):  # no random initialisation of ~200 M parameters that are replaced anyway
        net = network_class(kind)(arch)
    result = net.load_state_dict(encoder_state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise FileFormatError(f"{path} does not match a {encoder_type} encoder (missing "
                              f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    generator = _decoder(_split(state, DECODER_PREFIX), latent_avg, path)
    for size_opt in ("output_size", "stylegan_size"):
        if opts.get(size_opt, generator.size) != generator.size:
            raise FileFormatError(f"{path}: opts {size_opt} {opts[size_opt]} contradicts its "
                                  f"{generator.size} px decoder")
    if generator.n_latent != arch.n_styles or generator.style_dim != arch.style_dim:
        raise FileFormatError(f"{path}: the encoder predicts {arch.n_styles}×{arch.style_dim} codes but its "
                              f"decoder takes {generator.n_latent}×{generator.style_dim}")
    start = _start_code(latent_avg, arch, path)
    return EncoderCheckpoint(net.eval().requires_grad_(False), generator, start, dict(opts))


def _decoder(state: dict[str, torch.Tensor], latent_avg: torch.Tensor, path: Path) -> Generator:
    """The rosinality decoder; its mean w is the start code's mean over entries."""
    if not state:
        raise FileFormatError(f"{path} has no decoder.* weights; an encoder checkpoint holds its generator")
    try:
        arch = infer_generator_arch(state, f"{path} (decoder)")
        w_avg = latent_avg.float().reshape(-1, latent_avg.shape[-1]).mean(0)
        G = generator_from_checkpoint(GeneratorCheckpoint(state, w_avg, arch), f"{path} (decoder)")
    except FileFormatError:
        raise
    except HDNError as exc:
        raise FileFormatError(str(exc)) from None
    return G.requires_grad_(False).eval()


def _start_code(latent_avg: torch.Tensor, arch: EncoderArch, path: Path) -> torch.Tensor:
    code = latent_avg.float()
    if code.ndim == 1 and code.shape[0] == arch.style_dim:
        code = code[None].repeat(arch.n_styles, 1)
    if tuple(code.shape) != (arch.n_styles, arch.style_dim):
        raise FileFormatError(f"{path}: latent_avg has shape {tuple(latent_avg.shape)}, expected "
                              f"({arch.n_styles}, {arch.style_dim}) or ({arch.style_dim},)")
    return code


def write_encoder_checkpoint(path: str | Path, net: Net, generator: Generator,
                             latent_avg: torch.Tensor, opts: dict[str, Any] | None = None) -> Path:
    """Save in the released layout (``encoder.*``/``decoder.*`` state dict, ``opts``, ``latent_avg``);
    ``opts`` add to (or replace) the ones that name the network and its decoder size."""
    state = {ENCODER_PREFIX + k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    state.update({DECODER_PREFIX + k: v.detach().cpu().clone() for k, v in generator.state_dict().items()
                  if k != "latent_avg"})
    encoder_type = {kind: name for name, kind in ENCODER_TYPES.items()}[net.arch.kind]
    if net.arch.kind == E4E_KIND:
        base = {"encoder_type": encoder_type, "stylegan_size": generator.size, "start_from_latent_avg": True}
    else:
        base = {"encoder_type": encoder_type, "input_nc": net.arch.input_nc, "output_size": generator.size,
                "n_iters_per_batch": 5}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "opts": {**base, **(opts or {})},
                    "latent_avg": latent_avg.detach().cpu().clone()}, tmp)
    return Path(path)


__all__ = ["EncoderCheckpoint", "EncoderArch", "Net", "input_channels", "network_class", "read_encoder_checkpoint",
           "write_encoder_checkpoint"]
