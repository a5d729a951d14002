"""Domain parameterisations and domains (``Domain.load`` / ``Domain.save``)."""
from .files import Domain

__all__ = ["Domain"]
