"""The encoder networks in eval mode, rewritten for inference (same function, fewer passes).

``InferenceNet(net)`` computes ``net(x)`` of an eval-mode :class:`ReStyleNet` up to float rounding:

* every BatchNorm that follows a convolution is folded into it: conv(x, W)·a + c = conv(x, W·a) + c
  with a = γ/√(σ² + ε), c = β − μ·a (stem, the residual branch's second conv, the 1×1 shortcut
  conv). The BatchNorm that opens each residual branch precedes a zero-padded conv and stays
  (its shift would differ at the borders);
* the 1×1 max-pool shortcut is a strided view x[:, :, ::s, ::s] (the identity for s = 1), not a pass;
* squeeze-excitation and the residual sum are one ``addcmul``: out = shortcut + r ⊙ sigmoid(gate),
  its two 1×1 convs on the pooled (B, C) vector are matrix products;
* the heads: the first stride-2 3×3 conv of all n heads reads the same 16×16 map, so the map is
  unfolded (im2col) once and each head's conv is one matrix product of a view of its stored
  weight (D, C·9) with the patches (C·9, B·P); the later convs likewise on each head's own map,
  and the equalised linear layers as matrix products. Weights are read in place: no per-call reorder of
  the heads' ~700 MB of weights into a convolution layout, no copy of them.

``E4EInferenceNet(net)`` does the same for an eval-mode :class:`Encoder4EditingNet`: the same
stem and units, and the heads of each pyramid level batched on their level's map.

Folded weights are copies (the backbone's convs: 62 MiB for IR-SE50); everything else is a
view of ``net``'s tensors, so build a new ``InferenceNet`` after changing ``net``'s weights
(``ReStyleEncoder`` does this by itself).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import irse
from .encoder4editing import Encoder4EditingNet, feature_pyramid, level
from .network import LEAKY_SLOPE, ReStyleNet, StyleHead, base_plus_deltas


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = x·a + c: a = γ/√(σ² + ε), c = β − μ·a (per channel)."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - bn.running_mean * a


class _FoldedConv:
    """conv(x, W) followed by an eval BatchNorm, as one conv with weight W·a and bias c."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        a, c = _bn_affine(bn)
        self.weight = (conv.weight * a[:, None, None, None]).contiguous(memory_format=torch.channels_last)
        self.bias = c if conv.bias is None else conv.bias * a + c
        self.stride, self.padding = conv.stride, conv.padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class _Unit:
    """One IR-SE unit: addcmul(shortcut(x), r, sigmoid(fc2(relu(fc1(mean r))))) with
    r = conv2'(prelu(conv1(BN1(x)))) (conv2' = conv2 with the following BatchNorm folded in)."""

    def __init__(self, unit: irse.BottleneckIRSE) -> None:
        bn1, conv1, prelu, conv2, bn2, se = unit.res_layer
        self.bn1_scale, self.bn1_shift = (t[None, :, None, None] for t in _bn_affine(bn1))
        self.conv1, self.prelu = conv1, prelu.weight
        self.conv2 = _FoldedConv(conv2, bn2)
        self.fc1 = se.fc1.weight.flatten(1)       # (C/16, C)
        self.fc2 = se.fc2.weight.flatten(1)       # (C, C/16)
        shortcut = unit.shortcut_layer
        if isinstance(shortcut, nn.MaxPool2d):
            self.shortcut = None
            self.stride = int(shortcut.stride if isinstance(shortcut.stride, int) else shortcut.stride[0])
        else:
            self.shortcut = _FoldedConv(shortcut[0], shortcut[1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.addcmul(self.bn1_shift, x, self.bn1_scale)
        r = F.prelu(F.conv2d(r, self.conv1.weight, None, self.conv1.stride, self.conv1.padding), self.prelu)
        r = self.conv2(r)
        gate = torch.sigmoid(F.linear(torch.relu(F.linear(r.mean((2, 3)), self.fc1)), self.fc2))
        short = x[:, :, ::self.stride, ::self.stride] if self.shortcut is None else self.shortcut(x)
        return torch.addcmul(short, r, gate[:, :, None, None])


class _Heads:
    """All style heads (n of them) on one feature map → codes (B, n, D), by im2col + matrix products.

    Each product is W (D, C·9) · patchesᵀ (C·9, B·P): the stored weight as the left operand, which
    MKL runs up to 2× faster than patches · Wᵀ when B·P is small (4×4 and 2×2 maps at batch 1)."""

    def __init__(self, heads: nn.ModuleList) -> None:
        first: StyleHead = heads[0]
        self.convs = [[(h.convs[k].weight.flatten(1), h.convs[k].bias[:, None]) for h in heads]   # (D, C·9), (D, 1)
                      for k in range(0, len(first.convs), 2)]
        self.linear = [(h.linear.weight, h.linear.scale, h.linear.bias[:, None]) for h in heads]

    @staticmethod
    def _patches(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B, C, h, w) → the stride-2, pad-1 3×3 patches as columns (C·9, B·P), and the output size."""
        ho, wo = (x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2
        cols = F.unfold(x, 3, padding=1, stride=2)              # (B, C·9, P)
        return cols.transpose(0, 1).reshape(cols.shape[1], -1), ho, wo

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        b = features.shape[0]
        cols, h, w = self._patches(features)                     # shared by every head's first conv
        maps = [F.leaky_relu(torch.addmm(bias, weight, cols), LEAKY_SLOPE)   # (D, B·P)
                for weight, bias in self.convs[0]]
        for layer in self.convs[1:]:
            nxt = []
            for m, (weight, bias) in zip(maps, layer):
                x = m.reshape(m.shape[0], b, h, w).transpose(0, 1)     # (B, D, h, w) view
                c, ho, wo = self._patches(x)
                nxt.append(F.leaky_relu(torch.addmm(bias, weight, c), LEAKY_SLOPE))
            maps, h, w = nxt, ho, wo
        if (h, w) != (1, 1):
            raise ValueError(f"the encoder's feature map is too large for its heads ({(h, w)} after the head "
                             "convs); feed 256×256 images")
        # equalised linear: y = (W·c)·x + β, as β + c·(W·x)
        return torch.stack([torch.addmm(bias, weight, m, alpha=scale).t()
                            for m, (weight, scale, bias) in zip(maps, self.linear)], dim=1)


class InferenceNet:
    """``net(x)`` for an eval-mode :class:`ReStyleNet` (module docstring): (B, 6, 256, 256) →
    (B, n_styles, style_dim)."""

    def __init__(self, net: ReStyleNet) -> None:
        if net.training:
            raise ValueError("InferenceNet folds eval-mode BatchNorm statistics; call net.eval() first")
        self.kind = net.arch.kind
        conv, bn, prelu = net.input_layer
        with torch.no_grad():
            self.stem, self.stem_prelu = _FoldedConv(conv, bn), prelu.weight
            self.units = [_Unit(unit) for unit in net.body]
            self.heads = _Heads(net.styles)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = F.prelu(self.stem(x), self.stem_prelu)
        for unit in self.units:
            x = unit(x)
        codes = self.heads(x)
        return base_plus_deltas(codes) if self.kind == "e4e" else codes


class E4EInferenceNet:
    """``net(x)`` for an eval-mode :class:`Encoder4EditingNet`: the same folded stem and IR-SE
    units as :class:`InferenceNet`, and the heads of each pyramid level batched on their map."""

    def __init__(self, net: Encoder4EditingNet) -> None:
        if net.training:
            raise ValueError("E4EInferenceNet folds eval-mode BatchNorm statistics; call net.eval() first")
        conv, bn, prelu = net.input_layer
        levels = [level(i) for i in range(net.arch.n_styles)]
        with torch.no_grad():
            self.stem, self.stem_prelu = _FoldedConv(conv, bn), prelu.weight
            self.units = [_Unit(unit) for unit in net.body]
            self.heads = [_Heads(nn.ModuleList(h for h, lv in zip(net.styles, levels) if lv == k))
                          for k in range(max(levels) + 1)]
        self.latlayer1, self.latlayer2 = net.latlayer1, net.latlayer2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        stages = irse.stage_maps(self.units, F.prelu(self.stem(x), self.stem_prelu))
        maps = feature_pyramid(stages, self.latlayer1, self.latlayer2, len(self.heads) - 1)
        return base_plus_deltas(torch.cat([heads(m) for heads, m in zip(self.heads, maps)], dim=1))


__all__ = ["E4EInferenceNet", "InferenceNet"]
