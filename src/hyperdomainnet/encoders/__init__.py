"""Photo encoders: fast inversion of real photos into a StyleGAN2 generator's W+ space.

    from hyperdomainnet import load_encoder
    E = load_encoder("restyle-psp-ffhq")          # zoo name or checkpoint file
    ws = E.invert(images, iterations=5)           # (B, 3, H, W) in [−1, 1] → (B, n_latent, 512)
    E.generator                                   # the checkpoint's decoder

ReStyle's iterative pSp and e4e (:class:`ReStyleEncoder`) and encoder4editing's single-pass e4e
(:class:`E4EEncoder`, ``e4e-ffhq``) load from their released checkpoints.
"""
from .base import DEFAULT_ITERATIONS, INPUT_SIZE, PhotoEncoder
from .checkpoint import EncoderCheckpoint, read_encoder_checkpoint, write_encoder_checkpoint
from .e4e import E4EEncoder
from .encoder4editing import Encoder4EditingNet
from .inference import InferenceNet
from .loading import load_encoder
from .network import EncoderArch, ReStyleNet
from .restyle import ReStyleEncoder

__all__ = ["DEFAULT_ITERATIONS", "INPUT_SIZE", "E4EEncoder", "Encoder4EditingNet", "EncoderArch",
           "EncoderCheckpoint", "InferenceNet", "PhotoEncoder", "ReStyleEncoder", "ReStyleNet",
           "load_encoder", "read_encoder_checkpoint", "write_encoder_checkpoint"]
