"""hyperdomainnet: StyleGAN2 domain adaptation by domain modulation and HyperDomainNet.

Main entry points: ``load_generator(spec)`` (file, zoo name or ``random:<size>``), ``Domain.load`` /
``load_domain`` and ``domain.save`` for domain files, ``HyperDomainNet.load`` / ``net.save`` for
hypernetworks. Errors a user can cause are :class:`HDNError` subclasses.
"""
from .domain.files import Domain, load_domain
from .errors import ConfigError, DeviceError, DownloadError, FileFormatError, HDNError
from .hypernet.model import HyperDomainNet
from .loaders import load_generator
from .stylegan2 import Generator, GeneratorArch

__version__ = "0.1.0"
__all__ = ["ConfigError", "DeviceError", "Domain", "DownloadError", "FileFormatError", "Generator",
           "GeneratorArch", "HDNError", "HyperDomainNet", "load_domain", "load_generator", "__version__"]
