"""hyperdomainnet: StyleGAN2 domain adaptation by domain modulation and HyperDomainNet.

Every artefact loads by ``X.load(path)`` or ``load_x(name_or_path)`` and saves by ``x.save(path)``:

* generators: ``load_generator(spec)`` (file, zoo name or ``random:<size>``);
* domains: ``Domain.load`` / ``load_domain`` and ``domain.save``;
* hypernetworks: ``HyperDomainNet.load`` / ``load_hypernet`` and ``net.save``;
* inverted photos: ``Latent.load`` and ``latent.save`` (W+ codes written by ``hdn invert``);
* photo encoders: ``load_encoder`` (released ReStyle and e4e checkpoints; read only).

Errors a user can cause are :class:`HDNError` subclasses: :class:`ConfigError`,
:class:`FileFormatError`, :class:`DownloadError`, :class:`DeviceError`.
"""
from .domain.files import Domain
from .encoders import ReStyleEncoder, load_encoder
from .errors import ConfigError, DeviceError, DownloadError, FileFormatError, HDNError
from .hypernet.model import HyperDomainNet
from .latent import Latent
from .loaders import load_domain, load_generator, load_hypernet
from .stylegan2 import Generator, GeneratorArch
from .version import __version__

__all__ = ["ConfigError", "DeviceError", "Domain", "DownloadError", "FileFormatError", "Generator",
           "GeneratorArch", "HDNError", "HyperDomainNet", "Latent", "ReStyleEncoder", "load_domain",
           "load_encoder", "load_generator", "load_hypernet", "__version__"]
