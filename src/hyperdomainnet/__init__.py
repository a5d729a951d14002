"""hyperdomainnet: StyleGAN2 domain adaptation by domain modulation and HyperDomainNet."""
from .errors import HDNError
from .stylegan2 import Generator, GeneratorArch
from .stylegan2.loading import load_generator

__version__ = "0.1.0"
__all__ = ["Generator", "GeneratorArch", "HDNError", "load_generator", "__version__"]
