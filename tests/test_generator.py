"""Generator: domain modulation formulations, per-sample domains, W+ indexing, mixing, noise."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hyperdomainnet import load_generator
from hyperdomainnet.stylegan2 import Generator
from hyperdomainnet.stylegan2.layers import ModulatedConv2d
from hyperdomainnet.stylegan2.ops import upfirdn2d
from hyperdomainnet.training.sampling import sample_ws_per_call


def direct_modconv(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor, gain: torch.Tensor,
                   placement: str) -> torch.Tensor:
    """Per-sample loop: W_b = scale·W·s_b (·g before demod), demodulate (·g after), conv."""
    outs = []
    for b in range(x.shape[0]):
        s = style[b] * gain[b] if placement == "before_demod" else style[b]
        w = conv.weight[0] * conv.scale * s[None, :, None, None]
        if conv.demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if placement == "after_demod":
            w = w * gain[b][None, :, None, None]
        if conv.upsample:
            y = F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2)
            y = upfirdn2d(y, conv.blur.kernel, pad=conv.blur.pad)
        else:
            y = F.conv2d(x[b:b + 1], w, padding=conv.padding)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("placement", ["after_demod", "before_demod"])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_modconv_matches_direct_per_sample_modulation(upsample: bool, placement: str, impl: str) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=8, upsample=upsample)
    x = torch.randn(3, 6, 8, 8)
    style = torch.randn(3, 6)
    gain = 1 + 0.5 * torch.randn(3, 6)
    expected = direct_modconv(conv, x, style, gain, placement)
    got = conv(x, style, gain, placement, impl)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_placements_differ() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=8)
    x, style, gain = torch.randn(2, 6, 8, 8), torch.randn(2, 6), 1 + torch.randn(2, 6)
    assert not torch.allclose(conv(x, style, gain, "after_demod"), conv(x, style, gain, "before_demod"))


@pytest.mark.parametrize("placement", ["after_demod", "before_demod"])
def test_generator_fast_path_matches_reference(tiny_G: Generator, placement: str) -> None:
    ws = tiny_G.ws(torch.randn(3, 512), z2=torch.randn(3, 512), crossover=4)
    domain = 0.3 * torch.randn(3, tiny_G.domain_size)
    offset = 0.3 * torch.randn(tiny_G.domain_size)
    fast = tiny_G.synthesis(ws, domain=domain, style_offset=offset, placement=placement)
    ref = tiny_G.synthesis(ws, domain=domain, style_offset=offset, placement=placement, impl="reference")
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


def test_zero_domain_is_identity(tiny_G: Generator) -> None:
    ws = tiny_G.ws(torch.randn(2, 512))
    source = tiny_G.synthesis(ws)
    for placement in ("after_demod", "before_demod"):
        assert torch.equal(tiny_G.synthesis(ws, domain=torch.zeros(tiny_G.domain_size), placement=placement), source)
    assert torch.equal(tiny_G.synthesis(ws, style_offset=torch.zeros(2, tiny_G.domain_size)), source)
    assert not torch.allclose(tiny_G.synthesis(ws, domain=0.5 * torch.ones(tiny_G.domain_size)), source)


@pytest.mark.parametrize("kind", ["domain", "style_offset"])
def test_per_sample_vectors_equal_separate_runs(tiny_G: Generator, kind: str) -> None:
    ws = tiny_G.ws(torch.randn(3, 512))
    vectors = 0.4 * torch.randn(3, tiny_G.domain_size)
    batched = tiny_G.synthesis(ws, **{kind: vectors})
    for i in range(3):
        single = tiny_G.synthesis(ws[i:i + 1], **{kind: vectors[i]})
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=1e-5)
    shared = tiny_G.synthesis(ws, **{kind: vectors[0]})
    torch.testing.assert_close(shared[0], batched[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shared[1], batched[1], atol=1e-3)


@pytest.mark.parametrize("placement", ["after_demod", "before_demod"])
def test_gradients_reach_only_the_domain_vector(tiny_G: Generator, placement: str) -> None:
    delta = torch.zeros(tiny_G.domain_size, requires_grad=True)
    img = tiny_G.synthesis(tiny_G.ws(torch.randn(2, 512)), domain=delta, placement=placement)
    img.square().mean().backward()
    assert all(p.grad is None for p in tiny_G.parameters())
    for layer_grad in tiny_G.split_domain(delta.grad):
        assert layer_grad.abs().sum() > 0


def test_domain_gradient_matches_reference_path(tiny_G: Generator) -> None:
    ws = tiny_G.ws(torch.randn(2, 512))
    grads = []
    for impl in ("fast", "reference"):
        delta = (0.1 * torch.ones(tiny_G.domain_size)).requires_grad_()
        tiny_G.synthesis(ws, domain=delta, impl=impl).sin().sum().backward()
        grads.append(delta.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)


def test_w_plus_indexing(tiny_G: Generator) -> None:
    """conv1 reads w[0], to_rgb1 w[1], convs[i] w[i+1], to_rgbs[k] w[2k+3]."""
    seen: dict[str, float] = {}
    hooks = []
    named = {"conv1": tiny_G.conv1.conv, "to_rgb1": tiny_G.to_rgb1.conv}
    named.update({f"convs.{i}": c.conv for i, c in enumerate(tiny_G.convs)})
    named.update({f"to_rgbs.{k}": t.conv for k, t in enumerate(tiny_G.to_rgbs)})
    for name, conv in named.items():
        hooks.append(conv.modulation.register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, float(inp[0][0, 0]))))
    ws = torch.arange(tiny_G.n_latent, dtype=torch.float32)[None, :, None].expand(1, -1, 512).clone()
    tiny_G.synthesis(ws)
    for h in hooks:
        h.remove()
    expected = {"conv1": 0, "to_rgb1": 1}
    expected.update({f"convs.{i}": i + 1 for i in range(len(tiny_G.convs))})
    expected.update({f"to_rgbs.{k}": 2 * k + 3 for k in range(len(tiny_G.to_rgbs))})
    assert seen == expected
    assert max(expected.values()) == tiny_G.n_latent - 1


def test_style_mixing(tiny_G: Generator) -> None:
    z, z2 = torch.randn(2, 512), torch.randn(2, 512)
    ws = tiny_G.ws(z, z2=z2, crossover=3)
    torch.testing.assert_close(ws[:, :3], tiny_G.mapping(z)[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(ws[:, 3:], tiny_G.mapping(z2)[:, None].expand(-1, tiny_G.n_latent - 3, -1))
    assert torch.equal(tiny_G.ws(z), tiny_G.mapping(z)[:, None].expand(-1, tiny_G.n_latent, -1))
    gen = torch.Generator().manual_seed(0)
    crossovers = set()
    for _ in range(30):  # the training step draws z2 and the crossover
        mixed = sample_ws_per_call(tiny_G, 2, 1.0, gen, torch.device("cpu"), 1)[0]
        differs = (mixed != mixed[:, :1]).any(dim=2).any(dim=0)
        crossovers.add(int(differs.nonzero()[0]))
    assert crossovers <= set(range(1, tiny_G.n_latent)) and len(crossovers) > 2
    for bad in (0, None):
        with pytest.raises(ValueError):
            tiny_G.ws(z, z2=z2, crossover=bad)


def test_truncation(tiny_G: Generator) -> None:
    z = torch.randn(2, 512)
    avg = tiny_G.mean_latent()
    torch.testing.assert_close(tiny_G.ws(z, truncation=0.0), avg.expand(2, tiny_G.n_latent, -1))
    half = tiny_G.ws(z, truncation=0.5)
    torch.testing.assert_close(half, avg + 0.5 * (tiny_G.ws(z) - avg))
    custom = torch.randn(512)
    torch.testing.assert_close(tiny_G.ws(z, truncation=0.0, truncation_latent=custom),
                               custom.expand(2, tiny_G.n_latent, -1))


def test_mean_latent_is_mean_of_mapped_codes() -> None:
    G = Generator(8, style_dim=16, n_mlp=2, channel_max=8)
    z = torch.randn(4096, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(G.mean_latent(), G.mapping(z).mean(0))


def test_noise_modes(tiny_G: Generator) -> None:
    ws = tiny_G.ws(torch.randn(2, 512))
    const = tiny_G.synthesis(ws, noise_mode="const")
    assert torch.equal(const, tiny_G.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(tiny_G.synthesis(ws, noise_mode="random"), tiny_G.synthesis(ws, noise_mode="random"))
    none = tiny_G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(none, const)
    zero_noise = [torch.zeros_like(n) for n in tiny_G.make_noise("const", 2, ws.device)]
    torch.testing.assert_close(tiny_G.synthesis(ws, noise=zero_noise), none)
    with pytest.raises(ValueError):
        tiny_G.synthesis(ws, noise_mode="bogus")


@pytest.mark.parametrize("size", [8, 16, 64, 128])
def test_resolutions_and_shapes(size: int) -> None:
    G = load_generator(f"random:{size}:channel_max=8:n_mlp=1")
    img = G(torch.randn(2, 512))
    assert img.shape == (2, 3, size, size) and torch.isfinite(img).all()
    assert G.n_latent == 2 * int(math.log2(size)) - 2
    assert len(G.domain_layout) == G.num_layers == 2 * int(math.log2(size)) - 3


@pytest.mark.parametrize("size,expected", [(256, 5760), (512, 5952), (1024, 6048)])
def test_domain_sizes_of_config_f(size: int, expected: int) -> None:
    G = Generator(size, n_mlp=1, channel_multiplier=2)
    assert G.domain_size == expected
    if size == 1024:
        assert G.domain_layout == [512] * 10 + [256, 256, 128, 128, 64, 64, 32]


def test_bad_domain_shape(tiny_G: Generator) -> None:
    ws = tiny_G.ws(torch.randn(1, 512))
    with pytest.raises(ValueError, match="domain vector"):
        tiny_G.synthesis(ws, domain=torch.zeros(tiny_G.domain_size + 1))
    with pytest.raises(ValueError, match="placement"):
        tiny_G.synthesis(ws, domain=torch.zeros(tiny_G.domain_size), placement="sideways")
