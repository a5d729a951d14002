"""Bundled YAML presets reproducing the official HyperDomainNet configurations."""
