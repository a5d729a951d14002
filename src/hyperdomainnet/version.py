"""The library version (recorded in every result file and report)."""
__version__ = "0.1.0"
