"""Losses against direct loops and exact hand cases."""
from __future__ import annotations

import math

import pytest
import torch

from hyperdomainnet import losses

B, T, E = 5, 3, 6


def _cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(x @ y) / (float(x.norm()) * float(y.norm()))


def _unit(*shape: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_direction_matches_loop_for_every_text_shape() -> None:
    a, b = _unit(B, E), _unit(B, E)
    trg, src = _unit(B, T, E), _unit(B, T, E)
    expected = sum(1 - _cos(b[i] - a[i], (trg[i] - src[i]).mean(0)) for i in range(B)) / B
    assert losses.direction_loss(b, a, trg, src).item() == pytest.approx(expected, abs=1e-12)
    # per-sample means and per-sample direction as (B,E)
    got = losses.direction_loss(b, a, trg.mean(1), src.mean(1))
    assert got.item() == pytest.approx(expected, abs=1e-12)
    # one shared direction: (E,), (1,E) and (1,T,E) agree with the loop
    shared_t, shared_s = trg[:1], src[:1]
    shared_dir = (shared_t[0] - shared_s[0]).mean(0)
    expected_shared = sum(1 - _cos(b[i] - a[i], shared_dir) for i in range(B)) / B
    variants = [
        (shared_t, shared_s),
        (shared_t.mean(1), shared_s.mean(1)),
        (shared_t[0].mean(0), shared_s[0].mean(0)),
    ]
    for t, s in variants:
        assert losses.direction_loss(b, a, t, s).item() == pytest.approx(expected_shared, abs=1e-12)


def test_direction_hand_cases() -> None:
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t_src = torch.tensor([0.0, 0.0, 0.0])
    t_trg = torch.tensor([0.0, 0.0, 2.0])
    parallel = a + torch.tensor([0.0, 0.0, 1.0])
    assert losses.direction_loss(parallel, a, t_trg, t_src).item() == pytest.approx(0.0, abs=1e-6)
    orthogonal = a + torch.tensor([1.0, 1.0, 0.0])
    assert losses.direction_loss(orthogonal, a, t_trg, t_src).item() == pytest.approx(1.0, abs=1e-6)
    opposite = a - torch.tensor([0.0, 0.0, 3.0])
    assert losses.direction_loss(opposite, a, t_trg, t_src).item() == pytest.approx(2.0, abs=1e-6)


def test_global_matches_loop_and_hand_case() -> None:
    b, t = _unit(B, E), _unit(1, T, E)
    expected = sum(1 - _cos(b[i], t[0].mean(0)) for i in range(B)) / B
    assert losses.global_loss(b, t).item() == pytest.approx(expected, abs=1e-12)
    assert losses.global_loss(b, t[0].mean(0)).item() == pytest.approx(expected, abs=1e-12)
    same = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    assert losses.global_loss(same, torch.tensor([3.0, 4.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.global_loss(same, torch.tensor([-4.0, 3.0])).item() == pytest.approx(1.0, abs=1e-6)


def test_indomain_matches_loop_and_hand_cases() -> None:
    a, b = _unit(B, E), _unit(B, E)
    total = sum(
        (float(a[i] @ a[j]) - float(b[i] @ b[j])) ** 2 for i in range(B) for j in range(i + 1, B)
    )
    expected = 2.0 / (B * (B - 1)) * total
    assert losses.indomain_angle_loss(b, a).item() == pytest.approx(expected, abs=1e-12)
    assert losses.indomain_angle_loss(a, a).item() == 0.0
    # a_1 = a_2 (inner product 1), b_1 ⊥ b_2 (inner product 0): (1 − 0)² · 2/(2·1) = 1
    a2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert losses.indomain_angle_loss(b2, a2).item() == pytest.approx(1.0)
    assert losses.indomain_angle_loss(b2[:1], a2[:1]).item() == 0.0


def _tt_loop(b: torch.Tensor, t: torch.Tensor, ids: list[int] | None) -> float:
    terms = [
        1 - _cos(b[i] - b[j], t[i] - t[j])
        for i in range(len(b)) for j in range(i + 1, len(b))
        if ids is None or ids[i] != ids[j]
    ]
    return sum(terms) / len(terms)


def test_tt_direction_matches_loop_and_template_shapes() -> None:
    b, t = _unit(B, E), _unit(B, T, E)
    expected = _tt_loop(b, t.mean(1), None)
    assert losses.tt_direction_loss(b, t).item() == pytest.approx(expected, abs=1e-12)
    assert losses.tt_direction_loss(b, t.mean(1)).item() == pytest.approx(expected, abs=1e-12)


def test_tt_direction_masks_same_domain_pairs() -> None:
    ids = [0, 0, 1, 2, 1]
    b, domain_t = _unit(B, E), _unit(3, E)
    t = domain_t[ids]
    expected = _tt_loop(b, t, ids)
    assert losses.tt_direction_loss(b, t, ids).item() == pytest.approx(expected, abs=1e-12)
    assert losses.tt_direction_loss(b, t, torch.tensor(ids)).item() == pytest.approx(expected, abs=1e-12)
    # unmasked, each same-domain pair has a zero text delta and contributes exactly 1
    unmasked = losses.tt_direction_loss(b, t).item()
    assert unmasked == pytest.approx((expected * 8 + 1.0 * 2) / 10, abs=1e-12)


def test_tt_direction_all_pairs_masked_is_zero_with_grad() -> None:
    b = _unit(4, E).requires_grad_(True)
    loss = losses.tt_direction_loss(b, _unit(4, E), ["x"] * 4)
    assert loss.item() == 0.0
    loss.backward()
    assert b.grad is not None and torch.all(b.grad == 0)
    with pytest.raises(ValueError):
        losses.tt_direction_loss(b, _unit(4, E), [0, 1])


def test_offsets_hand_cases() -> None:
    deltas = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0]]), torch.tensor([[0.5, -0.5], [1.5, 0.5]])]
    l2 = (1 + 4) / 2 + 9 + (0.25 + 0.25 + 2.25 + 0.25) / 4
    l1 = (1 + 2) / 2 + 3 + (0.5 + 0.5 + 1.5 + 0.5) / 4
    assert losses.offsets_l2(deltas).item() == pytest.approx(l2)
    assert losses.offsets_l1(deltas).item() == pytest.approx(l1)
    named = {f"conv_{k}": d for k, d in enumerate(deltas)}
    assert losses.offsets_l2(named).item() == pytest.approx(l2)
    assert losses.offsets_l1(iter(deltas)).item() == pytest.approx(l1)


def test_clip_within_matches_loop() -> None:
    a, b = _unit(B, E), _unit(B, E)
    ref_img, ref_src = _unit(1, E), _unit(1, E)
    expected = sum(1 - _cos(b[i] - ref_img[0], a[i] - ref_src[0]) for i in range(B)) / B
    assert losses.clip_within_loss(b, a, ref_img, ref_src).item() == pytest.approx(expected, abs=1e-12)
    got = losses.clip_within_loss(b, a, ref_img[0], ref_src[0])
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_clip_ref_and_l2_rec_hand_cases() -> None:
    x = torch.tensor([[1.0, 0.0]])
    assert losses.clip_ref_loss(x, x).item() == pytest.approx(0.0)
    assert losses.clip_ref_loss(x, torch.tensor([[0.0, 2.0]])).item() == pytest.approx(1.0)
    pred, target = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(2, 2)
    assert losses.l2_rec_loss(pred, target).item() == pytest.approx(30 / 4)


@pytest.mark.parametrize("name", ["direction", "global", "indomain", "tt", "within", "ref"])
def test_gradients_reach_trg_encoded(name: str) -> None:
    a, t_trg, t_src = _unit(B, E), _unit(1, T, E), _unit(1, T, E)
    b = _unit(B, E).requires_grad_(True)
    loss = {
        "direction": lambda: losses.direction_loss(b, a, t_trg, t_src),
        "global": lambda: losses.global_loss(b, t_trg),
        "indomain": lambda: losses.indomain_angle_loss(b, a),
        "tt": lambda: losses.tt_direction_loss(b, _unit(B, T, E), list(range(B))),
        "within": lambda: losses.clip_within_loss(b, a, t_trg[0, :1], t_src[0, :1]),
        "ref": lambda: losses.clip_ref_loss(b, a),
    }[name]()
    loss.backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    assert math.isfinite(loss.item())


def test_direction_gradient_finite_when_images_identical() -> None:
    a = _unit(B, E)
    b = a.clone().requires_grad_(True)
    loss = losses.direction_loss(b, a, _unit(E), _unit(E))
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(b.grad).all()
