"""Domain arithmetic: strength specs, exact scaled sums/differences, compatibility checks, pruning."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hyperdomainnet.cli import main
from hyperdomainnet.domain.arithmetic import combine, parse_domain_spec, prune, scale
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import Parameterization, build_parameterization
from hyperdomainnet.errors import HDNError


def randomized(G, kind: str, seed: int, metadata: dict | None = None, **options) -> Domain:
    """A domain file of ``kind`` for G with random (non-identity) tensors."""
    P = build_parameterization(kind, G, **options)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in P.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return P.to_domain_file(G, metadata or {"target": f"domain {seed}"})


# ----- specs ---------------------------------------------------------------------------------
def test_parse_domain_spec_reads_strength():
    spec = parse_domain_spec("runs/pixar.safetensors*0.6")
    assert spec.path == Path("runs/pixar.safetensors") and spec.scale == 0.6
    assert spec.label == "pixar*0.6"
    plain = parse_domain_spec("a.safetensors")
    assert plain.scale == 1.0 and plain.label == "a"
    assert parse_domain_spec("a.safetensors*-1").scale == -1.0


@pytest.mark.parametrize("text", ["a.safetensors*x", "a.safetensors*", "*0.5", "a*nan", "a*inf"])
def test_bad_domain_spec_is_one_line_error(text):
    with pytest.raises(HDNError, match="bad domain spec") as info:
        parse_domain_spec(text)
    assert "\n" not in str(info.value)


# ----- exact arithmetic ----------------------------------------------------------------------
def test_combine_is_the_scaled_sum_exactly(tiny_G):
    a, b = randomized(tiny_G, "domain_vector", 1), randomized(tiny_G, "domain_vector", 2)
    mixed = combine([(a, 0.6), (b, 0.6)], ["a", "b"])
    assert torch.equal(mixed.vector, 0.6 * a.vector + 0.6 * b.vector)
    assert mixed.kind == "domain_vector" and mixed.placement == a.placement
    assert mixed.metadata["arithmetic"]["terms"] == [
        {"domain": "a", "scale": 0.6, "target": "domain 1"}, {"domain": "b", "scale": 0.6, "target": "domain 2"}]
    assert torch.equal(combine([(a, 1.0), (b, -1.0)]).vector, a.vector - b.vector)  # a − b
    assert torch.equal(combine([(a, 1.0), (a, -1.0)]).vector, torch.zeros_like(a.vector))
    assert torch.equal(scale(a, 1.0).vector, a.vector)
    assert scale(a, 1.0).metadata["target"] == "domain 1"  # a single term keeps the file's metadata


def test_scaling_a_weight_kind_matches_rendering_at_that_strength(tiny_G):
    """ι + α(t − ι) per tensor (γ of aff_cout has ι = 1) equals P.synthesize(scale=α)."""
    ws = tiny_G.ws(torch.randn(2, tiny_G.style_dim, generator=torch.Generator().manual_seed(0)))
    for kind in ("aff_cout", "csep_mult"):
        d = randomized(tiny_G, kind, 3)
        half = scale(d, 0.5)
        if kind == "aff_cout":
            assert torch.equal(half.tensors["gamma.0"], 1 + 0.5 * (d.tensors["gamma.0"] - 1))
            assert torch.equal(half.tensors["beta.0"], 0.5 * d.tensors["beta.0"])
        with torch.no_grad():
            direct = Parameterization.from_domain_file(d, tiny_G).synthesize(tiny_G, ws, scale=0.5)
            via_file = Parameterization.from_domain_file(half, tiny_G).synthesize(tiny_G, ws)
            source = tiny_G.synthesis(ws)
        torch.testing.assert_close(via_file, direct, atol=1e-5, rtol=1e-5)
        assert (direct - source).abs().max() > 1e-3  # the change is visible


def test_style_offsets_combine_and_round_trip(tiny_G, tmp_path):
    a, b = randomized(tiny_G, "style_offset", 4), randomized(tiny_G, "style_offset", 5)
    mixed = combine([(a, 1.0), (b, -0.25)])
    mixed.save(tmp_path / "m.safetensors")
    back = Domain.load(tmp_path / "m.safetensors")
    assert back.kind == "style_offset"
    assert torch.equal(back.vector, a.vector - 0.25 * b.vector)


# ----- incompatible inputs -------------------------------------------------------------------
def test_mixing_kinds_placements_or_generators_is_refused(tiny_G):
    a = randomized(tiny_G, "domain_vector", 1)
    cases = {
        "same kind": randomized(tiny_G, "style_offset", 2),
        "same placement": randomized(tiny_G, "domain_vector", 2, placement="before_demod"),
        "same generator": Domain(a.vector.clone(), a.kind, a.domain_layout, {**a.generator, "name": "other"},
                                 a.placement),
    }
    for expected, other in cases.items():
        with pytest.raises(HDNError, match=expected) as info:
            combine([(a, 1.0), (other, 1.0)], ["a.safetensors", "other.safetensors"])
        assert "\n" not in str(info.value) and "other.safetensors" in str(info.value)


def test_different_layouts_are_refused(tiny_G):
    from hyperdomainnet import load_generator

    big = load_generator("random:64:channel_max=16:n_mlp=2")
    a = randomized(tiny_G, "domain_vector", 1)
    b = randomized(big, "domain_vector", 1)
    b.generator["name"] = a.generator["name"]  # same name, different architecture
    with pytest.raises(HDNError, match="same generator"):
        combine([(a, 1.0), (b, 1.0)])


# ----- pruning -------------------------------------------------------------------------------
def test_prune_keeps_exactly_the_top_fraction(tiny_G):
    d = randomized(tiny_G, "domain_vector", 7)
    total = d.vector.numel()
    for keep in (0.2, 0.5, 1.0, 1e-9):
        pruned = prune(d, keep)
        k = max(1, round(keep * total))
        kept = pruned.vector != 0
        assert int(kept.sum()) == k
        threshold = torch.sort(d.vector.abs(), descending=True).values[k - 1]
        assert torch.equal(kept, d.vector.abs() >= threshold)  # distinct magnitudes: no ties
        assert torch.equal(pruned.vector[kept], d.vector[kept])
        assert pruned.metadata["sparsify"] == {"method": "StyleSpaceSparse", "keep": keep, "kept": k,
                                               "total": total}
        assert pruned.metadata["target"] == "domain 7"


def test_prune_resets_weight_kinds_to_their_identity(tiny_G):
    d = randomized(tiny_G, "aff_cout", 8)
    pruned = prune(d, 0.25)
    offsets = torch.cat([(t - (1.0 if k.startswith("gamma") else 0.0)).flatten() for k, t in pruned.tensors.items()])
    total = sum(t.numel() for t in d.tensors.values())
    assert int((offsets != 0).sum()) == round(0.25 * total)


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, math.nan])
def test_prune_rejects_bad_fractions(tiny_G, keep):
    with pytest.raises(HDNError, match="fraction"):
        prune(randomized(tiny_G, "domain_vector", 1), keep)


def test_prune_command(tiny_G, tmp_path, capsys):
    randomized(tiny_G, "domain_vector", 9).save(tmp_path / "d.safetensors")
    code = main(["prune", "--domain", str(tmp_path / "d.safetensors"), "--keep", "0.2",
                 "--out", str(tmp_path / "sparse.safetensors")])
    assert code == 0
    sparse = Domain.load(tmp_path / "sparse.safetensors")
    assert int((sparse.vector != 0).sum()) == round(0.2 * tiny_G.domain_size)
    assert sparse.metadata["sparsify"]["keep"] == 0.2
    assert f"kept {round(0.2 * tiny_G.domain_size)} of {tiny_G.domain_size}" in capsys.readouterr().out

    code = main(["prune", "--domain", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error:") and "does not exist" in err and err.count("\n") == 1
