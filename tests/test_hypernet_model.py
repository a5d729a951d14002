"""HyperDomainNet model (shapes, init, BatchNorm modes, file format) and its embedding samplers."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hyperdomainnet.domain.files import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import (HyperDomainNet, convex_mix, dirichlet_mixing_matrix,
                                     resample_embeddings)
from hyperdomainnet.stylegan2.generator import GeneratorArch

LAYOUT_1024 = [512] * 10 + [256, 256, 128, 128, 64, 64, 32]
TINY_LAYOUT = [16, 16, 8, 4]
META = {"clip_model": "random:tiny", "input": "text"}


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def tiny_net(seed: int = 0) -> HyperDomainNet:
    torch.manual_seed(seed)
    return HyperDomainNet(TINY_LAYOUT, embed_dim=8, width=16, depth=3, head_depth=2)


def trained(net: HyperDomainNet, steps: int = 3) -> HyperDomainNet:
    """Random weights and a few training-mode passes, so BatchNorm statistics leave their init."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        net.train()
        for i in range(steps):
            net(unit(6, net.embed_dim, seed=i))
    return net


# ----- architecture ---------------------------------------------------------------------------
def test_released_architecture_parameter_count_and_heads() -> None:
    assert GeneratorArch(1024).domain_layout() == LAYOUT_1024
    net = HyperDomainNet(LAYOUT_1024)
    # stem 263,680 + 3 blocks × 527,360 + 17 heads × (527,360 + 513·c_in) = 13,913,504
    assert sum(p.numel() for p in net.parameters()) == 13_913_504
    assert [head.out.out_features for head in net.heads] == LAYOUT_1024
    assert [len(head.blocks) for head in net.heads] == [1] * 17 and len(net.blocks) == 3
    assert net.domain_size == 6048
    assert net(unit(3, 512)).shape == (3, 6048)


def test_init_is_near_zero_and_linear_layers_follow_official_init() -> None:
    torch.manual_seed(0)
    net = HyperDomainNet(LAYOUT_1024)
    delta = net.domain_vectors(unit(8, 512))
    assert delta.shape == (8, 6048) and delta.abs().max() < 1e-2
    for layer in (net.stem.linear, net.blocks[0].fc2, net.heads[16].out):
        bound = 0.01 * (6 / sum(layer.weight.shape)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.5 * bound
        assert torch.all(layer.bias == 0)


def test_output_is_the_heads_concatenated_in_layout_order() -> None:
    net = tiny_net()
    with torch.no_grad():
        for i, head in enumerate(net.heads):
            head.out.weight.zero_()
            head.out.bias.fill_(i + 1.0)
    out = net.domain_vectors(unit(2, 8))
    expected = torch.cat([torch.full((c,), i + 1.0) for i, c in enumerate(TINY_LAYOUT)])
    assert torch.equal(out, expected.expand(2, -1))


def test_bad_embedding_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        tiny_net()(torch.zeros(2, 9))


# ----- BatchNorm modes ------------------------------------------------------------------------
def test_domain_vectors_runs_in_eval_without_grad_and_restores_the_mode() -> None:
    net = trained(tiny_net())
    x = unit(4, 8, seed=9)
    stats = net.stem.norm.running_mean.clone()
    out = net.domain_vectors(x)
    assert net.training  # restored
    assert torch.equal(net.stem.norm.running_mean, stats)  # eval: statistics untouched
    assert not out.requires_grad
    net.eval()
    assert torch.allclose(out, net(x))
    assert torch.allclose(net.domain_vectors(x[1]), out[1], atol=1e-6)  # (E,) → (D,)
    assert not net.training
    assert not torch.allclose(net.train()(x), out)  # batch statistics differ from running ones


def test_single_sample_training_batch_gives_a_clear_error() -> None:
    net = tiny_net().train()
    with pytest.raises(HDNError, match="at least 2") as info:
        net(unit(1, 8))
    assert "\n" not in str(info.value)
    assert net.domain_vectors(unit(1, 8)).shape == (1, sum(TINY_LAYOUT))


def test_training_step_reaches_every_head() -> None:
    net = tiny_net().train()
    net(unit(4, 8)).pow(2).sum().backward()
    for head in net.heads:
        assert head.out.weight.grad is not None and head.out.weight.grad.abs().sum() > 0
    assert net.stem.linear.weight.grad.abs().sum() > 0


# ----- file format ----------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path) -> None:
    net = trained(tiny_net())
    meta = {**META, "generator": {"name": "random:32", "sha256": None, "arch": {}},
            "domain_lists_sha256": "ab" * 32, "training": {"lr": 5e-5, "batch": 8}}
    path = net.save(tmp_path / "h.safetensors", meta)
    loaded = HyperDomainNet.load(path)
    assert not loaded.training
    assert loaded.architecture == net.architecture == {
        "domain_layout": TINY_LAYOUT, "embed_dim": 8, "width": 16, "depth": 3, "head_depth": 2}
    assert loaded.metadata == meta
    ours, theirs = net.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # incl. BN statistics
    x = unit(3, 8, seed=5)
    assert torch.equal(loaded.domain_vectors(x), net.domain_vectors(x))
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as fh:
        raw = json.loads(fh.metadata()["hyperdomainnet"])
    assert raw["format"] == "hyperdomainnet.hypernet" and raw["version"] == 1
    assert raw["clip_model"] == "random:tiny" and raw["input"] == "text"
    assert raw["architecture"]["domain_layout"] == TINY_LAYOUT
    loaded.save(tmp_path / "again.safetensors")  # metadata carried over
    assert HyperDomainNet.load(tmp_path / "again.safetensors").metadata == meta


@pytest.mark.parametrize("meta, match", [({"input": "text"}, "clip_model"),
                                         ({"clip_model": "ViT-B/32", "input": "audio"}, "input")])
def test_save_requires_encoder_and_input(tmp_path, meta, match) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_net().save(tmp_path / "h.safetensors", meta)
    assert not (tmp_path / "h.safetensors").exists()


def test_bad_files_give_one_line_errors(tmp_path) -> None:
    good = tiny_net().save(tmp_path / "good.safetensors", META)
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    Domain(torch.zeros(4), "domain_vector", [4], {"name": "x"}).save(tmp_path / "domain.safetensors")
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    meta = json.loads(header["__metadata__"]["hyperdomainnet"])
    meta["architecture"]["width"] = 32  # shapes no longer match the tensors
    header["__metadata__"]["hyperdomainnet"] = json.dumps(meta)
    blob = json.dumps(header).encode()
    (tmp_path / "arch.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob
                                                + data[8 + header_len:])
    cases = {"missing.safetensors": "does not exist", "trunc.safetensors": "safetensors",
             "junk.safetensors": "safetensors", "domain.safetensors": "not a HyperDomainNet file",
             "arch.safetensors": "corrupt HyperDomainNet"}
    for name, match in cases.items():
        with pytest.raises(HDNError, match=match) as info:
            HyperDomainNet.load(tmp_path / name)
        assert "\n" not in str(info.value)


# ----- samplers -------------------------------------------------------------------------------
def test_dirichlet_rows_are_distributions_and_deterministic() -> None:
    a = dirichlet_mixing_matrix(8, generator=torch.Generator().manual_seed(3))
    assert a.shape == (8, 8) and a.dtype == torch.float32
    assert torch.all(a >= 0) and torch.allclose(a.sum(1), torch.ones(8), atol=1e-5)
    state = torch.get_rng_state()
    b = dirichlet_mixing_matrix(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, dirichlet_mixing_matrix(8, generator=torch.Generator().manual_seed(4)))


def test_dirichlet_default_concentration_is_two_over_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    samples = torch.stack([dirichlet_mixing_matrix(8, generator=gen) for _ in range(400)])
    # Var of a Dirichlet(α·1) component, K = 8: (1/K)(1 − 1/K) / (Kα + 1); α = 2/K → Kα + 1 = 3
    assert samples.var() == pytest.approx((1 / 8) * (7 / 8) / 3, rel=0.1)
    assert samples.mean() == pytest.approx(1 / 8, rel=1e-3)
    flat = torch.stack([dirichlet_mixing_matrix(8, 100.0, generator=gen) for _ in range(100)])
    assert flat.var() == pytest.approx((1 / 8) * (7 / 8) / 801, rel=0.2)


def test_convex_mix_mixes_every_tensor_with_the_same_rows() -> None:
    a = dirichlet_mixing_matrix(4, generator=torch.Generator().manual_seed(1))
    x, t = unit(4, 6, seed=1), unit(4, 3, 6, seed=2)
    mx, mt = convex_mix(a, x, t)
    assert torch.allclose(mx, F.normalize(a @ x, dim=-1), atol=1e-6)
    assert torch.allclose(mt[2, 1], F.normalize((a[2, :, None] * t[:, 1]).sum(0), dim=0), atol=1e-6)
    assert torch.allclose(mt.norm(dim=-1), torch.ones(4, 3))
    raw, = convex_mix(a, x, normalize=False)
    assert torch.allclose(raw, a @ x, atol=1e-6)
    same, = convex_mix(torch.eye(4), x)
    assert torch.allclose(same, x, atol=1e-6)
    with pytest.raises(ValueError, match="batch"):
        convex_mix(a, unit(3, 6))


def test_resampled_vectors_are_unit_and_within_the_cosine_band() -> None:
    u = torch.randn(64, 5, 32, generator=torch.Generator().manual_seed(0)) * 3  # not unit
    r = resample_embeddings(u, 0.9, 0.97, generator=torch.Generator().manual_seed(1))
    assert r.shape == u.shape
    assert torch.allclose(r.norm(dim=-1), torch.ones(64, 5), atol=1e-5)
    cos = (r * F.normalize(u, dim=-1)).sum(-1)
    assert cos.min() >= 0.9 - 1e-5 and cos.max() <= 0.97 + 1e-5
    assert cos.mean() == pytest.approx(0.935, abs=0.005)  # c ~ U[0.9, 0.97]
    assert cos.std() > 0.015
    again = resample_embeddings(u, 0.9, 0.97, generator=torch.Generator().manual_seed(1))
    assert torch.equal(r, again)
    assert not torch.equal(r, resample_embeddings(u, 0.9, 0.97,
                                                  generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(resample_embeddings(u, 1.0, 1.0), F.normalize(u, dim=-1), atol=1e-6)
    with pytest.raises(ValueError):
        resample_embeddings(u, 0.99, 0.95)
