"""Domain-adaptation losses, one pure function each (per CLIP encoder; weight and sum outside).

Notation: a_i = E(G_A(w_i)) source-generator encodings, b_i = E(G_B(w_i)) adapted-generator
encodings, both (B,E) and L2-normalised by the encoder (as in the official trainers; the losses
do not re-normalise them), cos = cosine similarity.

Text arguments may be one embedding (E,), per-sample embeddings (B,E), or template stacks
(1,T,E)/(B,T,E); a stack stands for its mean over templates, so a direction from stacks is
mean_k(t_trg,k − t_src,k), as the official trainers compute it.

Cosines use ``torch.nn.functional.cosine_similarity`` like the official code: at b_i = a_i (the
first step, δ = 0) the direction cosine is 0 and its gradient is finite but large (∝ 1/eps);
Adam's normalisation makes the step size independent of that scale.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F


def _collapse_templates(text: torch.Tensor) -> torch.Tensor:
    """(E,) / (B,E) unchanged; (1,T,E) / (B,T,E) → mean over templates, (1,E) / (B,E)."""
    if text.ndim == 3:
        return text.mean(dim=1)
    if text.ndim in (1, 2):
        return text
    raise ValueError(f"text embeddings must be (E,), (B,E) or (B,T,E), got {tuple(text.shape)}")


def _cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − cos(x, y) along the last axis, broadcasting."""
    return 1.0 - F.cosine_similarity(x, y, dim=-1)


def _pairs(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j) of all pairs i < j."""
    i, j = torch.triu_indices(batch, batch, offset=1, device=device)
    return i, j


def direction_loss(
    trg_encoded: torch.Tensor,
    src_encoded: torch.Tensor,
    trg_text: torch.Tensor,
    src_text: torch.Tensor,
) -> torch.Tensor:
    """mean_i [1 − cos(b_i − a_i, Δt_i)], Δt_i = t_trg,i − t_src,i (template stacks: mean_k).

    With reference images instead of text (MindTheGap), t_trg = E(I_ref), t_src = E(G_A(w_ref)).
    """
    text_direction = _collapse_templates(trg_text) - _collapse_templates(src_text)
    return _cosine_distance(trg_encoded - src_encoded, text_direction).mean()


def global_loss(trg_encoded: torch.Tensor, trg_text: torch.Tensor) -> torch.Tensor:
    """mean_i [1 − cos(b_i, t_trg)]; a template stack stands for its mean embedding."""
    return _cosine_distance(trg_encoded, _collapse_templates(trg_text)).mean()


def indomain_angle_loss(trg_encoded: torch.Tensor, src_encoded: torch.Tensor) -> torch.Tensor:
    """(2 / (B(B−1))) Σ_{i<j} (⟨a_i,a_j⟩ − ⟨b_i,b_j⟩)², i.e. the mean over pairs.

    Plain dot products, as in the official code: pass normalised encodings. 0 when B < 2.
    """
    batch = trg_encoded.shape[0]
    if batch < 2:
        return (trg_encoded * 0.0).sum()
    i, j = _pairs(batch, trg_encoded.device)
    src_gram = (src_encoded[i] * src_encoded[j]).sum(dim=-1)
    trg_gram = (trg_encoded[i] * trg_encoded[j]).sum(dim=-1)
    return (src_gram - trg_gram).pow(2).mean()


def tt_direction_loss(
    trg_encoded: torch.Tensor,
    trg_text: torch.Tensor,
    domain_ids: Sequence[Hashable] | torch.Tensor | None = None,
) -> torch.Tensor:
    """mean over pairs i<j of [1 − cos(b_i − b_j, t_i − t_j)] (template stacks: mean_k).

    ``trg_text`` is per sample, (B,E) or (B,T,E). With ``domain_ids`` (length B), pairs of the
    same domain (zero text delta) are left out; if none is left the loss is 0 (with a graph).
    The released official code does not mask; its first commit did. 0 when B < 2.
    """
    batch = trg_encoded.shape[0]
    text = _collapse_templates(trg_text).expand(batch, -1)
    i, j = _pairs(batch, trg_encoded.device)
    if domain_ids is not None:
        ids = domain_ids.tolist() if isinstance(domain_ids, torch.Tensor) else list(domain_ids)
        if len(ids) != batch:
            raise ValueError(f"domain_ids has {len(ids)} entries for a batch of {batch}")
        keep = torch.tensor(
            [ids[a] != ids[b] for a, b in zip(i.tolist(), j.tolist())],
            dtype=torch.bool, device=trg_encoded.device,
        )
        i, j = i[keep], j[keep]
    if i.numel() == 0:
        return (trg_encoded * 0.0).sum()
    return _cosine_distance(trg_encoded[i] - trg_encoded[j], text[i] - text[j]).mean()


def _layers(deltas: Iterable[torch.Tensor] | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    return list(deltas.values()) if isinstance(deltas, Mapping) else list(deltas)


def offsets_l2(deltas: Iterable[torch.Tensor] | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Σ_l mean(δ_l²) over per-layer offsets (a batch axis, if any, is inside the mean)."""
    return torch.stack([delta.pow(2).mean() for delta in _layers(deltas)]).sum()


def offsets_l1(deltas: Iterable[torch.Tensor] | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Σ_l mean(|δ_l|) over per-layer offsets (a batch axis, if any, is inside the mean)."""
    return torch.stack([delta.abs().mean() for delta in _layers(deltas)]).sum()


def clip_within_loss(
    trg_encoded: torch.Tensor,
    src_encoded: torch.Tensor,
    ref_trg_encoded: torch.Tensor,
    ref_src_encoded: torch.Tensor,
) -> torch.Tensor:
    """MindTheGap within-domain loss: mean_i [1 − cos(b_i − E(I_ref), a_i − E(G_A(w_ref)))].

    ``ref_trg_encoded`` = E(I_ref), ``ref_src_encoded`` = E(G_A(w_ref)); (E,), (1,E) or (B,E).
    """
    return _cosine_distance(trg_encoded - ref_trg_encoded, src_encoded - ref_src_encoded).mean()


def clip_ref_loss(ref_trg_encoded: torch.Tensor, ref_image_encoded: torch.Tensor) -> torch.Tensor:
    """mean [1 − cos(E(G_B(w_ref)), E(I_ref))].

    The official trainer averages this over the CLIP encoders instead of summing.
    """
    return _cosine_distance(ref_trg_encoded, ref_image_encoded).mean()


def l2_rec_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((pred − target)²), e.g. bicubic↓4 G_B(w_ref) against I_ref at 256 px."""
    return F.mse_loss(pred, target)
