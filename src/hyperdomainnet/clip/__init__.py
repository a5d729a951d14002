"""CLIP encoders, differentiable preprocessing and prompt templates."""
from hyperdomainnet.clip.encoders import (
    DEFAULT_ENSEMBLE_SPEC,
    ClipEncoder,
    ClipEnsemble,
    load_clip,
    parse_ensemble_spec,
)
from hyperdomainnet.clip.preprocess import clip_preprocess
from hyperdomainnet.clip.templates import IMAGENET_TEMPLATES, fill_templates

__all__ = [
    "DEFAULT_ENSEMBLE_SPEC",
    "IMAGENET_TEMPLATES",
    "ClipEncoder",
    "ClipEnsemble",
    "clip_preprocess",
    "fill_templates",
    "load_clip",
    "parse_ensemble_spec",
]
