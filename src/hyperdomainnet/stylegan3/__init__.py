"""StyleGAN3 (alias-free T and R configs) in plain PyTorch, with domain modulation."""
from .generator import StyleGAN3Arch, StyleGAN3Generator, generator_family

__all__ = ["StyleGAN3Arch", "StyleGAN3Generator", "generator_family"]
