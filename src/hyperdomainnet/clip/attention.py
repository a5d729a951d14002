"""CLIP's image towers on a faster, exact self-attention path (``prepare_clip``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ClipEnsemble


class PackedSelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose batch-first, unmasked self-attention projects all (B·L)
    tokens with one matrix product before ``scaled_dot_product_attention``.

    PyTorch's generic path (taken whenever autograd records, e.g. for the adapted images' CLIP
    encoding) projects a transposed (L, B, E) view against a broadcast weight as a batched matrix
    product: a third of ViT-B/16's encoding time on a 2-core CPU. Other calls use that path.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        plain = (query is key and key is value and self.batch_first and not need_weights
                 and key_padding_mask is None and attn_mask is None and not is_causal
                 and self._qkv_same_embed_dim and self.bias_k is None and not self.add_zero_attn
                 and (self.dropout == 0 or not self.training))
        if not plain:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        b, n, e = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.num_heads, e // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias), None


def prepare_clip(clip: ClipEnsemble) -> ClipEnsemble:
    """Switch the image towers' self-attention to ``PackedSelfAttention`` (same parameters and
    results, in place); text towers keep theirs (causal masks)."""
    for encoder, _ in clip:
        for module in encoder.model.visual.modules():
            if type(module) is nn.MultiheadAttention:
                module.__class__ = PackedSelfAttention
    return clip
