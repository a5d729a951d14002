"""Parameterisations: identity at init, official formulas, the weight hook, isolation, files, phases, layer selection."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyperdomainnet import load_generator
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.fileformat import read_metadata
from hyperdomainnet.domain.layer_selection import select_layers
from hyperdomainnet.domain.parameterizations import (PARAMETERIZATIONS, PHASES, ChannelOut, FullFineTuning,
                                                     Parameterization, batch_key, build_parameterization, synthesize)
from hyperdomainnet.errors import HDNError
from hyperdomainnet.losses import offsets_l2
from hyperdomainnet.stylegan2 import Generator
from hyperdomainnet.stylegan2.layers import ConvModifier, ModulatedConv2d
from hyperdomainnet.stylegan2.ops import upfirdn2d


WEIGHT_KINDS = ["cout_mult", "csep_mult", "cfull_mult", "cink_mult", "coutk_mult", "aff_cout"]
FILE_KINDS = ["domain_vector", "style_offset", *WEIGHT_KINDS]


def ws_of(G: Generator, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return G.ws(torch.randn(batch, G.style_dim, generator=torch.Generator().manual_seed(seed)))


def randomize(P: Parameterization, std: float = 0.1, seed: int = 0) -> Parameterization:
    """Move every trainable tensor away from its identity value (β of aff_cout less, it adds to the weight)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in P.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * (std / 10 if name.endswith("beta") else std))
    return P


# ----- identity, isolation ------------------------------------------------------------------
@pytest.mark.parametrize("kind,options", [(k, {}) for k in PARAMETERIZATIONS] + [
    ("domain_vector", {"placement": "before_demod"}), *[("full", {"phase": ph}) for ph in ("all", "affine")]])
def test_identity_at_init(tiny_G: Generator, kind: str, options: dict) -> None:
    P = build_parameterization(kind, tiny_G, **options)
    ws = ws_of(tiny_G)
    assert torch.equal(P.synthesize(tiny_G, ws), tiny_G.synthesis(ws))
    assert torch.equal(P.synthesize(tiny_G, ws, impl="reference"), tiny_G.synthesis(ws, impl="reference"))
    assert float(offsets_l2(P.regularized_tensors()).detach()) == 0.0


@pytest.mark.parametrize("kind", list(PARAMETERIZATIONS))
def test_optimizer_step_changes_only_the_parameterization(tiny_G: Generator, kind: str) -> None:
    P = build_parameterization(kind, tiny_G)
    source = {k: v.clone() for k, v in tiny_G.state_dict().items()}
    trainable = P.trainable_parameters()
    assert trainable and not {id(p) for p in trainable} & {id(p) for p in tiny_G.parameters()}
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.Adam(trainable, lr=1e-2)
    loss = P.synthesize(tiny_G, ws_of(tiny_G)).sin().mean() + 0.1 * offsets_l2(P.regularized_tensors())
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in tiny_G.parameters())
    assert all(torch.equal(v, source[k]) for k, v in tiny_G.state_dict().items())
    assert all(not torch.equal(b, p) for b, p in zip(before, trainable))
    frozen = [p for p in P.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


# ----- the weight hook: fast == reference == direct formula ---------------------------------
def direct_modconv(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor,
                   placement: str, mult: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per sample: W_b = demod(scale·W·s_b (·g before)) (·g after) ⊙ M + β_o, then conv (+ blur)."""
    outs = []
    for b in range(x.shape[0]):
        s = style[b] * gain[b] if placement == "before_demod" else style[b]
        w = conv.weight[0] * conv.scale * s[None, :, None, None]
        w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if placement == "after_demod":
            w = w * gain[b][None, :, None, None]
        w = w * mult + bias[:, None, None, None]
        if conv.upsample:
            y = upfirdn2d(F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2), conv.blur.kernel,
                          pad=conv.blur.pad)
        else:
            y = F.conv2d(x[b:b + 1], w, padding=conv.padding)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("placement", ["after_demod", "before_demod"])
def test_modifier_fast_equals_reference_equals_direct(upsample: bool, placement: str) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=8, upsample=upsample)
    x, style, gain = torch.randn(3, 6, 8, 8), torch.randn(3, 6), 1 + 0.5 * torch.randn(3, 6)
    mult, bias = 1 + 0.5 * torch.randn(5, 6, 3, 3), 0.3 * torch.randn(5)
    expected = direct_modconv(conv, x, style, gain, placement, mult, bias)
    for impl in ("fast", "reference"):
        got = conv(x, style, gain, placement, impl, ConvModifier(mult=mult, bias=bias))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    plain = conv(x, style, gain, placement)
    assert not torch.allclose(conv(x, style, gain, placement, modifier=ConvModifier(mult=mult)), plain)
    assert not torch.allclose(conv(x, style, gain, placement, modifier=ConvModifier(bias=bias)), plain)


def official_multiplier(kind: str, layer: dict[str, torch.Tensor], c_out: int, c_in: int) -> torch.Tensor:
    """M (c_out, c_in, 3, 3) from the official heads, written out element-wise from natural shapes."""
    o = torch.arange(c_out)[:, None, None, None]
    i = torch.arange(c_in)[None, :, None, None]
    ky = torch.arange(3)[None, None, :, None]
    kx = torch.arange(3)[None, None, None, :]
    t = {k: v.detach().reshape(-1) for k, v in layer.items()}
    zero = torch.zeros(c_out, c_in, 3, 3)
    if kind == "cout_mult":
        return zero + 1 + t["out"][o]
    if kind == "csep_mult":
        return zero + 1 + t["in"][i] + t["out"][o]
    if kind == "cfull_mult":
        return zero + 1 + t["shift"].reshape(c_out, c_in)[o, i]
    if kind == "cink_mult":
        return zero + 1 + t["in"][i] + t["kernel"].reshape(3, 3)[ky, kx]
    if kind == "coutk_mult":
        return zero + 1 + t["out"][o] + t["kernel"].reshape(3, 3)[ky, kx]
    return zero + t["gamma"][o]  # aff_cout (β separately)


@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_weight_kinds_match_official_formulas(tiny_G: Generator, kind: str) -> None:
    P = randomize(build_parameterization(kind, tiny_G))
    ws = ws_of(tiny_G, 3)
    modifiers = []
    for sc, layer in zip(tiny_G.styled_convs, P.layers):
        mult = official_multiplier(kind, dict(layer), sc.conv.out_channels, sc.conv.in_channels)
        bias = layer["beta"].detach().reshape(-1) if kind == "aff_cout" else None
        modifiers.append(ConvModifier(mult=mult, bias=bias))
    expected = tiny_G.synthesis(ws, modifiers=modifiers, impl="reference")
    fast = P.synthesize(tiny_G, ws)
    torch.testing.assert_close(fast, expected, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(P.synthesize(tiny_G, ws, impl="reference"), expected, atol=2e-4, rtol=1e-4)
    assert not torch.allclose(fast, tiny_G.synthesis(ws), atol=1e-2)


@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_regularized_tensors_match_official_offsets_l2(tiny_G: Generator, kind: str) -> None:
    P = randomize(build_parameterization(kind, tiny_G))
    expected = 0.0
    for layer in map(dict, P.layers):
        layer = {k: v.detach() for k, v in layer.items()}
        if kind == "aff_cout":  # official affine_l2: Σ((γ−1)² + β²) / numel(γ)
            expected += float(((layer["gamma"] - 1) ** 2 + layer["beta"] ** 2).sum() / layer["gamma"].numel())
        else:  # official offsets_l2: the broadcast sum of the layer's offsets, mean square
            total = sum(layer.values())
            expected += float(total.pow(2).sum() / total.numel())
    assert float(offsets_l2(P.regularized_tensors()).detach()) == pytest.approx(expected, rel=1e-5)


def test_scale_and_per_sample_batches(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G, 3)
    P = randomize(build_parameterization("domain_vector", tiny_G))
    alphas = torch.tensor([0.0, 0.5, 1.0])
    batched = P.synthesize(tiny_G, ws, scale=alphas)
    for b, a in enumerate(alphas.tolist()):
        torch.testing.assert_close(batched[b:b + 1], P.synthesize(tiny_G, ws[b:b + 1], scale=a), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[:1], tiny_G.synthesis(ws[:1]), atol=1e-5, rtol=1e-5)
    W = randomize(build_parameterization("aff_cout", tiny_G))
    assert torch.equal(W.synthesize(tiny_G, ws, scale=0.0), tiny_G.synthesis(ws))
    with pytest.raises(HDNError, match="whole batch"):
        W.synthesize(tiny_G, ws, scale=alphas)
    with pytest.raises(HDNError, match="scale"):
        build_parameterization("full", tiny_G).synthesize(tiny_G, ws, scale=0.5)


# ----- domain files -------------------------------------------------------------------------
@pytest.mark.parametrize("kind,options", [(k, {}) for k in FILE_KINDS] + [("domain_vector", {"placement": "before_demod"})])
def test_domain_file_round_trip(tmp_path: Path, tiny_G: Generator, kind: str, options: dict) -> None:
    P = randomize(build_parameterization(kind, tiny_G, **options))
    path = P.to_domain_file(tiny_G, {"prompt": "x"}).save(tmp_path / "d.safetensors")
    domain = Domain.load(path)
    assert domain.kind == kind and domain.metadata["prompt"] == "x" and domain.generator == tiny_G.identity
    assert read_metadata(path)["version"] == (1 if kind in ("domain_vector", "style_offset") else 2)
    Q = Parameterization.from_domain_file(domain, tiny_G)
    assert type(Q) is type(P) and type(P).from_domain_file(domain, tiny_G).name == kind
    ws = ws_of(tiny_G)
    expected = P.synthesize(tiny_G, ws)
    assert torch.equal(Q.synthesize(tiny_G, ws), expected)
    if domain.vector is not None:
        assert torch.equal(tiny_G.synthesis(ws, **domain.synthesis_kwargs()), expected)
    else:
        with pytest.raises(HDNError, match="from_domain_file"):
            domain.synthesis_kwargs()
    if kind != "cout_mult":
        with pytest.raises(HDNError, match=kind):
            ChannelOut.from_domain_file(domain, tiny_G)


def test_domain_file_for_another_generator_is_refused(tmp_path: Path, tiny_G: Generator) -> None:
    other = load_generator("random:32:channel_max=8:n_mlp=2")
    for kind in ("domain_vector", "cout_mult"):
        domain = build_parameterization(kind, tiny_G).to_domain_file(tiny_G, {})
        with pytest.raises(HDNError, match="generator"):
            Parameterization.from_domain_file(domain, other)


def test_full_fine_tuning_produces_a_generator(tiny_G: Generator) -> None:
    P = randomize(build_parameterization("full", tiny_G), std=0.05)
    with pytest.raises(HDNError, match=r"generator \.pt"):
        P.to_domain_file(tiny_G, {})
    G2 = P.to_generator()
    assert isinstance(G2, Generator) and not any(p.requires_grad for p in G2.parameters())
    ws = ws_of(tiny_G)
    assert torch.equal(G2.synthesis(ws), P.synthesize(tiny_G, ws))
    assert not torch.allclose(G2.synthesis(ws), tiny_G.synthesis(ws), atol=1e-3)
    assert G2.identity["finetuned_from"]["name"] == tiny_G.identity["name"]


# ----- full fine-tuning phases --------------------------------------------------------------
def _conv_params(*convs: int) -> set[str]:
    return {f"convs.{c}.{p}" for c in convs for p in (
        "conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")}


CONV1 = {"input.input", "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
         "conv1.noise.weight", "conv1.activate.bias"}
RGB = {f"{m}.{p}" for m in ("to_rgb1", "to_rgbs.0", "to_rgbs.1", "to_rgbs.2", "to_rgbs.3")
       for p in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias")}
PHASE_PARAMS = {  # 64 px: convs 0…7
    "convs": CONV1 | _conv_params(*range(8)),
    "all": CONV1 | _conv_params(*range(8)) | RGB,
    "texture": CONV1 | _conv_params(*range(2, 8)),
    "shape": CONV1 | _conv_params(0, 1),
    "no_fine": CONV1 | _conv_params(*range(8)),
    "shape_expanded": CONV1 | _conv_params(0, 1, 2),
    "affine": {f"convs.{c}.conv.modulation.{p}" for c in range(8) for p in ("weight", "bias")},
    "conv_kernel": {f"convs.{c}.conv.weight" for c in range(8)},
}


def test_full_fine_tuning_phases_train_the_official_layer_groups() -> None:
    G = load_generator("random:64:channel_max=4:n_mlp=2")
    assert set(PHASES) == set(PHASE_PARAMS)
    for phase, expected in PHASE_PARAMS.items():
        P = FullFineTuning(G, phase=phase)
        trainable = {n.removeprefix("generator.") for n, p in P.named_parameters() if p.requires_grad}
        assert trainable == expected, phase
    with pytest.raises(HDNError, match="texture"):
        build_parameterization("full", G, phase="mapping")


# ----- adaptive layer selection -------------------------------------------------------------
def test_layer_selection_picks_the_codes_that_moved_most(tiny_G: Generator) -> None:
    n = tiny_G.n_latent  # 8 codes, 7 convs
    weights = torch.tensor([0.1, 3.0, 0.2, 2.0, 0.3, 1.0, 0.05, 9.0])  # the last code only feeds toRGB

    def loss(images: torch.Tensor) -> torch.Tensor:
        return (images * weights[None, :, None]).sum()

    assert weights.numel() == n
    assert select_layers(tiny_G, loss, 3, render=lambda ws: ws) == [1, 3, 5]
    assert select_layers(tiny_G, loss, 1, render=lambda ws: ws, iters=3) == [1]


@pytest.mark.parametrize("kind", ["domain_vector", "full"])
def test_layer_selection_restricts_training(tiny_G: Generator, kind: str) -> None:
    P = randomize(build_parameterization(kind, tiny_G), std=0.05)
    target = torch.zeros(1, 3, 32, 32)
    chosen = select_layers(tiny_G, lambda img: (img - target).square().mean(), 3,
                           render=lambda ws: P.synthesize(tiny_G, ws), batch=2,
                           generator=torch.Generator().manual_seed(0))
    assert len(chosen) == 3 == len(set(chosen)) and all(0 <= j < len(tiny_G.styled_convs) for j in chosen)
    assert all(p.grad is None for p in P.parameters())
    P.train_only_layers(chosen)
    groups = P.layer_groups()
    before = [[q.detach().clone() for q in ([g] if isinstance(g, torch.nn.Parameter) else g.parameters())]
              for g in groups]
    opt = torch.optim.Adam(P.trainable_parameters(), lr=1e-2)
    P.synthesize(tiny_G, ws_of(tiny_G)).sin().mean().backward()
    opt.step()
    for j, (g, old) in enumerate(zip(groups, before)):
        new = [g] if isinstance(g, torch.nn.Parameter) else list(g.parameters())
        changed = [not torch.equal(a, b) for a, b in zip(old, new)]
        assert any(changed) if j in chosen else not any(changed), j
    if kind == "full":
        assert not P.generator.input.input.requires_grad and not P.generator.to_rgb1.bias.requires_grad


# ----- errors ---------------------------------------------------------------------------------
def test_errors(tiny_G: Generator) -> None:
    with pytest.raises(HDNError, match="unknown parameterization 'nope'; choose one of domain_vector, style_offset"):
        build_parameterization("nope", tiny_G)
    with pytest.raises(HDNError, match="no option placement; its options: none"):
        build_parameterization("cout_mult", tiny_G, placement="after_demod")
    with pytest.raises(HDNError, match="placement"):
        build_parameterization("domain_vector", tiny_G, placement="sideways")
    with pytest.raises(HDNError, match=r"\[1, 7\]"):
        select_layers(tiny_G, lambda img: img.mean(), 8)
    with pytest.raises(HDNError, match="out of range"):
        build_parameterization("domain_vector", tiny_G).train_only_layers([7])


def test_the_domain_door_renders_each_sample_in_its_own_domain(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G, batch=4)
    vector = randomize(build_parameterization("domain_vector", tiny_G), seed=1).to_domain_file(tiny_G, {})
    offset = randomize(build_parameterization("style_offset", tiny_G), seed=2).to_domain_file(tiny_G, {})
    before = randomize(build_parameterization("domain_vector", tiny_G, placement="before_demod"), seed=3)
    cout = randomize(build_parameterization("cout_mult", tiny_G), seed=4)
    with torch.no_grad():
        mixed = synthesize(tiny_G, ws, [None, vector, offset, vector], [1.0, 0.5, 0.8, 1.0])
        alone = [tiny_G.synthesis(ws[:1])] + [Parameterization.from_domain_file(d, tiny_G).synthesize(
            tiny_G, ws[i:i + 1], scale=s) for i, d, s in ((1, vector, 0.5), (2, offset, 0.8), (3, vector, 1.0))]
        torch.testing.assert_close(mixed, torch.cat(alone), rtol=1e-5, atol=1e-5)
        for param in (before, cout):  # one domain for the batch: its own parameterisation's render
            domain = param.to_domain_file(tiny_G, {})
            torch.testing.assert_close(synthesize(tiny_G, ws, [domain], [0.7]), param.synthesize(tiny_G, ws, 0.7))
    assert [batch_key(d) for d in (None, vector, offset, before.to_domain_file(tiny_G, {}))] == \
        ["after_demod"] * 3 + ["before_demod"]
    with pytest.raises(HDNError, match="whole batch"):
        synthesize(tiny_G, ws[:2], [cout.to_domain_file(tiny_G, {}), None], [1.0, 1.0])
    with pytest.raises(HDNError, match="separate passes"):
        synthesize(tiny_G, ws[:2], [vector, before.to_domain_file(tiny_G, {})], [1.0, 1.0])
    with pytest.raises(HDNError, match="per-sample parameterisation"):
        cout.synthesize(tiny_G, ws[:2], scale=torch.tensor([1.0, 0.5]))
