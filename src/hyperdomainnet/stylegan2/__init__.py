"""StyleGAN2 in plain PyTorch: generator, checkpoint formats, pretrained zoo."""
from .generator import Generator, GeneratorArch

__all__ = ["Generator", "GeneratorArch"]
