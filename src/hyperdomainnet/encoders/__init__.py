"""ReStyle encoders: fast inversion of real photos into a StyleGAN2 generator's W+ space.

    from hyperdomainnet import ReStyleEncoder
    E = ReStyleEncoder.load("restyle-psp-ffhq")   # zoo name or checkpoint file (or load_encoder(…))
    ws = E.invert(images, iterations=5)           # (B, 3, H, W) in [−1, 1] → (B, n_latent, 512)
    E.generator                                   # the checkpoint's decoder
"""
from .checkpoint import EncoderCheckpoint, read_encoder_checkpoint, write_encoder_checkpoint
from .inference import InferenceNet
from .network import EncoderArch, ReStyleNet
from .restyle import DEFAULT_ITERATIONS, INPUT_SIZE, ReStyleEncoder, load_encoder

__all__ = ["DEFAULT_ITERATIONS", "INPUT_SIZE", "EncoderArch", "EncoderCheckpoint", "InferenceNet", "ReStyleEncoder",
           "ReStyleNet",
           "load_encoder", "read_encoder_checkpoint", "write_encoder_checkpoint"]
