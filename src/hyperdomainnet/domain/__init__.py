"""Domain parameterisations and domain files."""
from .files import DomainFile, load_domain_file, save_domain_file

__all__ = ["DomainFile", "load_domain_file", "save_domain_file"]
