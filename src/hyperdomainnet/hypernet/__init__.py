"""HyperDomainNet: the hypernetwork model, its file format and its embedding samplers."""
from .model import FORMAT, HyperDomainNet
from .samplers import convex_mix, dirichlet_mixing_matrix, resample_embeddings

__all__ = ["FORMAT", "HyperDomainNet", "convex_mix", "dirichlet_mixing_matrix", "resample_embeddings"]
