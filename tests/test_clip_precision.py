"""CLIP precision: OpenAI's loader layout (fp16 weights, fp32 LayerNorms), fp32 embeddings, auto by device."""
from __future__ import annotations

import torch
from open_clip.transformer import LayerNorm

from hyperdomainnet.clip import load_clip


def test_fp16_weights_keep_fp32_layer_norms_and_embeddings() -> None:
    enc = load_clip("random:tiny")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    full_images, full_text = enc.encode_images(images), enc.encode_text(["a sketch", "a photo"])
    enc.set_precision("fp16")
    assert enc.dtype == torch.float16 and enc.model.visual.proj.dtype == torch.float16
    norms = [m for m in enc.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 and type(m) is not LayerNorm for m in norms)
    half_images, half_text = enc.encode_images(images), enc.encode_text(["a sketch", "a photo"])
    assert half_images.dtype == half_text.dtype == torch.float32
    assert 0 < float((half_images - full_images).abs().max()) < 1e-2
    assert 0 < float((half_text - full_text).abs().max()) < 1e-2
    fresh = load_clip("random:tiny").set_precision("auto")  # the CPU: fp32, as OpenAI's loader there
    assert fresh.dtype == torch.float32 and torch.equal(fresh.encode_images(images), full_images)
