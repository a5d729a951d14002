"""Domain parameterisations and domains (``Domain.load`` / ``Domain.save``)."""
from .files import Domain, load_domain

__all__ = ["Domain", "load_domain"]
