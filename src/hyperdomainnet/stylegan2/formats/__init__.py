"""Checkpoint formats: rosinality ``.pt`` (read/write) and NVIDIA ``.pkl`` (safe read)."""
