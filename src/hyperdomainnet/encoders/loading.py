"""``load_encoder``: the encoder a checkpoint file or zoo name holds, ready to invert photos."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import FileFormatError, HDNError
from .base import PhotoEncoder
from .checkpoint import ENCODER_NAMES, read_encoder_checkpoint
from .e4e import E4EEncoder
from .encoder4editing import KIND as E4E_KIND
from .restyle import ReStyleEncoder


def encoder_path(spec: str | Path) -> tuple[Path, str]:
    """(local file, name) of an encoder given as a file or a zoo name (downloaded on first use)."""
    path = Path(str(spec)).expanduser()
    if path.exists():
        return path, path.name
    from .. import zoo

    try:
        entry = zoo.resolve(str(spec))
    except HDNError:
        raise FileFormatError(f"encoder {spec!r} is neither a file nor a zoo name; pass an encoder "
                              f"checkpoint or one of {ENCODER_NAMES}") from None
    if entry.kind != "encoder":
        raise FileFormatError(f"{entry.name} is a {entry.kind} in the model zoo, not an encoder; pass "
                              f"an encoder name ({ENCODER_NAMES}) or file")
    return zoo.fetch(entry.name), entry.name


def load_encoder(spec: str | Path, device: str | torch.device = "cpu") -> PhotoEncoder:
    """The encoder in a checkpoint file or zoo entry, on ``device``: a :class:`ReStyleEncoder`
    (iterative pSp / e4e) or an :class:`E4EEncoder` (encoder4editing, one pass), as the checkpoint's
    ``opts.encoder_type`` and tensors say. Its generator's identity names the zoo entry (or the
    file) and its SHA-256. Released checkpoints are read-only artefacts: there is no ``save``."""
    from ..hashing import file_identity_sha256

    path, name = encoder_path(spec)
    ckpt = read_encoder_checkpoint(path)
    ckpt.generator.identity = {"name": name, "sha256": file_identity_sha256(path),
                               "arch": ckpt.generator.arch.to_dict()}
    cls = E4EEncoder if ckpt.net.arch.kind == E4E_KIND else ReStyleEncoder
    return cls(ckpt.net, ckpt.generator, ckpt.latent_avg, name, ckpt.opts).to(device)


__all__ = ["encoder_path", "load_encoder"]
