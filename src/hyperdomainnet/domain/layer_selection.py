"""StyleGAN-NADA adaptive layer selection: train only the convs whose W+ codes a CLIP loss moves most.

Procedure (NADA ``determine_opt_layers``): w_i = mapping(z_i) for ``batch`` random z (no
truncation, no mixing), repeated into W+ codes; ``iters`` plain SGD steps (lr 0.01) on the codes
against ``loss(render(ws))`` (the global CLIP loss, rendered with the current adapted
generator); score_j = mean over samples and channels of |w⁺_T,j − w⁺_0,j|; keep the top-k.

Code → conv: each conv of ``G.styled_convs`` is scored by the movement of the W+ entry it reads
(``G.conv_code_indices``: entry j for StyleGAN2's 3×3 conv j, entry j + 1 for StyleGAN3's layer
j); the last entry, read only by the final toRGB, is not a candidate (as in the official
HyperDomainNet code's ``layer_weights[:-1]``). NADA maps entry j to [conv1, to_rgb1, convs…][j]
instead, i.e. it picks convs[j−2] although that conv reads entry j−1, and can pick to_rgb1; we
use the conv that actually reads the code. Apply the result with
``Parameterization.train_only_layers`` (``full``: only those convs train, as NADA; vector kinds:
only those layers' vectors get gradients, the others keep their current values — the official
code's version of this for domain vectors calls the generator with a stale argument and crashes).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError
from ..stylegan2.generator import Generator

NADA_LR = 0.01


def select_layers(G: Generator, loss: Callable[[torch.Tensor], torch.Tensor], k: int, *,
                  render: Callable[[torch.Tensor], torch.Tensor] | None = None, iters: int = 1,
                  batch: int = 8, lr: float = NADA_LR, generator: torch.Generator | None = None) -> list[int]:
    """Indices (into ``G.styled_convs``, ascending) of the k convs whose codes moved most.

    ``loss(images)`` → scalar; ``render(ws)`` → images, default ``G.synthesis`` (pass the adapted
    generator, e.g. ``lambda ws: param.synthesize(G, ws)``). Gradients reach only the codes.
    """
    n_convs = len(G.styled_convs)
    if not 1 <= k <= n_convs:
        raise ConfigError(f"layer selection k must be in [1, {n_convs}] for this generator, got {k}")
    if iters < 1:
        raise ConfigError(f"layer selection needs at least one iteration, got {iters}")
    render = G.synthesis if render is None else render
    device = G.latent_avg.device
    with torch.no_grad():
        z = torch.randn(batch, G.style_dim, generator=generator).to(device)  # CPU generator: reproducible
        initial = G.mapping(z)[:, None].repeat(1, G.n_latent, 1)
    ws = initial.clone()
    for _ in range(iters):
        ws.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(render(ws)), [ws])
        ws = (ws - lr * grad).detach()
    movement = (ws - initial).abs().mean(dim=-1).mean(dim=0)[G.conv_code_indices]
    return sorted(torch.topk(movement, k).indices.tolist())
