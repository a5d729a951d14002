"""StyleGAN3 generator: equal to NVIDIA's reference formulation (written here, as its ``impl='ref'``
paths compute it), fast filtered leaky ReLU equal to the plain one (forward and backward), domain
modulation, and the input transform."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperdomainnet.errors import ConfigError
from hyperdomainnet.stylegan3 import StyleGAN3Arch, StyleGAN3Generator
from hyperdomainnet.stylegan3.filters import lowpass_filter
from hyperdomainnet.stylegan3.ops import filtered_lrelu, filtered_lrelu_reference

scipy_signal = pytest.importorskip("scipy.signal")
scipy_special = pytest.importorskip("scipy.special")

TINY = {"style_dim": 16, "channel_base": 256, "channel_max": 16}


def tiny_generator(config: str, seed: int = 0, size: int = 32) -> StyleGAN3Generator:
    """Random weights everywhere NVIDIA's init has constants, so every term is exercised."""
    torch.manual_seed(seed)
    G = StyleGAN3Generator(StyleGAN3Arch(size, config, **TINY)).eval()
    with torch.no_grad():
        G.input.affine.weight.normal_()
        G.input.affine.bias.normal_()
        for layer in G.layers:
            layer.bias.normal_(0, 0.5)
            layer.magnitude_ema.uniform_(0.2, 3.0)
    G.set_transform(translate=(0.13, -0.07), rotate=23.0)
    return G.requires_grad_(False)


# ----- NVIDIA's reference formulation, written out --------------------------------------------

def ref_upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """Zero insertion, pad/crop, flipped-filter (separable for 1-D) depthwise conv, keep every down-th."""
    if f is None:
        f = torch.ones(1, 1)
    b, c, h, w = x.shape
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(b, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::down, ::down]


def ref_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    x = x + b[None, :, None, None]
    x = ref_upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)
    x = torch.where(x >= 0, x, x * slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return ref_upfirdn2d(x, fd, down=down)


def ref_modulated_conv2d(x, w, s, demodulate, padding, input_gain):
    b = x.shape[0]
    o, i, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w[None] * s[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    w = w * input_gain.expand(b, i)[:, None, :, None, None]
    x = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, i, kh, kw), padding=padding, groups=b)
    return x.reshape(b, -1, *x.shape[2:])


def ref_design(numtaps, cutoff, width, fs, radial=False):
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy_signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy_special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy_signal.kaiser_beta(scipy_signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f *= np.outer(w, w)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


def ref_layers(arch: StyleGAN3Arch, conv_kernel: int, radial: bool) -> list[dict]:
    """NVIDIA's SynthesisNetwork / SynthesisLayer constructor arithmetic."""
    res, n, n_crit = arch.size, arch.num_layers, arch.num_critical
    last_cutoff = res / 2
    last_stopband = last_cutoff * 2**0.3
    e = np.minimum(np.arange(n + 1) / (n - n_crit), 1)
    cutoffs = 2 * (last_cutoff / 2) ** e
    stopbands = 2**2.1 * (last_stopband / 2**2.1) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + 20
    sizes[-2:] = res
    layers = []
    for idx in range(n + 1):
        prev = max(idx - 1, 0)
        torgb = idx == n
        tmp = max(rates[prev], rates[idx]) * (1 if torgb else 2)
        up, down = int(np.rint(tmp / rates[prev])), int(np.rint(tmp / rates[idx]))
        k = 1 if torgb else conv_kernel
        up_taps = 6 * up if up > 1 and not torgb else 1
        down_taps = 6 * down if down > 1 and not torgb else 1
        total = (sizes[idx] - 1) * down + 1 - (sizes[prev] + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        layers.append({
            "up": up, "down": down, "k": k, "torgb": torgb, "padding": [int(lo), int(total - lo)] * 2,
            "fu": ref_design(up_taps, cutoffs[prev], half[prev] * 2, tmp),
            "fd": ref_design(down_taps, cutoffs[idx], half[idx] * 2, tmp,
                             radial=radial and idx < n - n_crit)})
    return layers


def ref_input(G: StyleGAN3Generator, w0: torch.Tensor) -> torch.Tensor:
    inp = G.input
    t = F.linear(w0, inp.affine.weight * inp.affine.scale, inp.affine.bias)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    m_r = torch.eye(3).repeat(w0.shape[0], 1, 1)
    m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    m_t = torch.eye(3).repeat(w0.shape[0], 1, 1)
    m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
    transforms = m_r @ m_t @ inp.transform[None]
    phases = inp.phases[None] + (inp.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)
    freqs = inp.freqs[None] @ transforms[:, :2, :2]
    amp = (1 - (freqs.norm(dim=2) - inp.bandwidth) / (inp.sampling_rate / 2 - inp.bandwidth)).clamp(0, 1)
    theta = torch.eye(2, 3)
    theta[0, 0] = theta[1, 1] = 0.5 * inp.size / inp.sampling_rate
    grids = F.affine_grid(theta[None], [1, 1, inp.size, inp.size], align_corners=False)
    x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
    x = torch.sin((x + phases[:, None, None]) * (np.pi * 2)) * amp[:, None, None]
    x = x @ (inp.weight / np.sqrt(inp.channels)).t()
    return x.permute(0, 3, 1, 2)


def ref_synthesis(G: StyleGAN3Generator, ws: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
    conv_kernel, radial = (3, False) if G.arch.config == "t" else (1, True)
    specs = ref_layers(G.arch, conv_kernel, radial)
    gains = G.split_domain(domain) if domain is not None else [None] * G.num_layers
    x = ref_input(G, ws[:, 0])
    for idx, (layer, spec) in enumerate(zip(G.layers, specs)):
        styles = F.linear(ws[:, idx + 1], layer.affine.weight * layer.affine.scale, layer.affine.bias)
        input_gain = layer.magnitude_ema.rsqrt().reshape(1, 1)
        if spec["torgb"]:
            styles = styles / np.sqrt(layer.in_channels)
        elif gains[idx] is not None:
            input_gain = input_gain * (1 + gains[idx])
        x = ref_modulated_conv2d(x, layer.weight, styles, not spec["torgb"], spec["k"] - 1, input_gain)
        x = ref_filtered_lrelu(x, spec["fu"], spec["fd"], layer.bias, spec["up"], spec["down"], spec["padding"],
                               1.0 if spec["torgb"] else np.sqrt(2), 1.0 if spec["torgb"] else 0.2, 256.0)
    return x * 0.25


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


# ----- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["t", "r"])
def test_equals_nvidia_reference_with_transform_and_domain(config):
    G = tiny_generator(config)
    ws = torch.randn(2, G.n_latent, G.style_dim)
    ref = ref_synthesis(G, ws)
    assert float(ref.abs().max()) > 1e-3  # a real image, not a vanished signal
    assert rel_diff(G.synthesis(ws), ref) <= 2e-4
    assert rel_diff(G.synthesis(ws, impl="reference"), ref) <= 2e-4
    delta = 0.3 * torch.randn(2, G.domain_size)
    ref_d = ref_synthesis(G, ws, delta)
    assert rel_diff(ref_d, ref) > 1e-2
    assert rel_diff(G.synthesis(ws, domain=delta), ref_d) <= 2e-4
    G.channels_last = True  # as device.prepare_generator sets it on the CPU and CUDA
    assert rel_diff(G.synthesis(ws, domain=delta), ref_d) <= 2e-4


def test_designed_filters_match_scipy():
    design = StyleGAN3Arch(64, "r", channel_base=256, channel_max=16).design()  # 1×1 convs, radial filters
    for layer in design.layers()[:-1]:
        fu = ref_design(layer.up_taps, layer.in_cutoff, 2 * layer.in_half_width, layer.tmp_rate)
        fd = ref_design(layer.down_taps, layer.out_cutoff, 2 * layer.out_half_width, layer.tmp_rate,
                        radial=not layer.critically_sampled)
        assert torch.allclose(layer.up_filter(), fu, atol=1e-7)
        assert torch.allclose(layer.down_filter(), fd, atol=1e-7)
    assert lowpass_filter(1, 1.0, 1.0, 4.0) is None


@pytest.mark.parametrize("up,down,padding,radial", [(2, 2, (9, 8), False), (4, 2, (-6, -9), False),
                                                    (2, 2, (9, 8), True), (2, 2, (-11, -12), False),
                                                    (4, 2, (30, 2), False)])
def test_fast_filtered_lrelu_equals_plain_forward_and_backward(up, down, padding, radial):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fu = lowpass_filter(6 * up, 3.0, 4.0, 8.0 * up).double()
    fd = lowpass_filter(6 * down, 3.0, 4.0, 8.0 * up, radial=radial).double()
    args = (fu, fd, b, up, down, padding, math.sqrt(2), 0.2, 1.5)
    fast, plain = filtered_lrelu(x, *args), filtered_lrelu_reference(x, *args)
    ref = ref_filtered_lrelu(x, fu, fd, b, up, down, list(padding) * 2, math.sqrt(2), 0.2, 1.5)
    assert fast.shape == plain.shape == ref.shape
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(plain, ref)
    g = torch.randn_like(fast)
    gx_fast, gb_fast = torch.autograd.grad(fast, (x, b), g)
    gx_plain, gb_plain = torch.autograd.grad(plain, (x, b), g)
    torch.testing.assert_close(gx_fast, gx_plain)
    torch.testing.assert_close(gb_fast, gb_plain)


def test_domain_vector_layout_and_shapes():
    G = tiny_generator("t")
    assert G.domain_layout == [layer.in_channels for layer in G.layers[:-1]]
    assert len(G.domain_layout) == G.arch.num_layers == G.n_latent - 2
    assert G.domain_layout == G.arch.domain_layout()
    ws = G.ws(torch.randn(3, G.style_dim))
    source = G.synthesis(ws)
    torch.testing.assert_close(G.synthesis(ws, domain=torch.zeros(G.domain_size)), source)
    delta = 0.2 * torch.randn(G.domain_size)
    shared, rows = G.synthesis(ws, domain=delta), G.synthesis(ws, domain=delta.expand(3, -1))
    torch.testing.assert_close(shared, rows)
    per_sample = G.synthesis(ws, domain=torch.stack([delta, torch.zeros_like(delta), delta]))
    torch.testing.assert_close(per_sample[1], source[1])
    torch.testing.assert_close(per_sample[0], shared[0])
    with pytest.raises(ConfigError, match="domain vector"):
        G.synthesis(ws, domain=torch.zeros(G.domain_size + 1))


def test_placements_offsets_cache_and_gradients():
    G = tiny_generator("r")
    ws = G.ws(torch.randn(2, G.style_dim))
    delta = (0.2 * torch.randn(G.domain_size)).requires_grad_()
    after = G.synthesis(ws, domain=delta)
    before = G.synthesis(ws, domain=delta, placement="before_demod")
    torch.testing.assert_close(before, G.synthesis(ws, domain=delta, placement="before_demod", impl="reference"),
                               rtol=1e-4, atol=1e-5)
    assert rel_diff(after, before) > 1e-3
    (grad,) = torch.autograd.grad(after.square().sum(), delta)
    assert grad.abs().sum() > 0
    cache = G.style_cache(ws)
    torch.testing.assert_close(G.synthesis(ws, cache=cache), G.synthesis(ws))
    torch.testing.assert_close(G.synthesis(ws, style_offset=torch.zeros(G.domain_size)), G.synthesis(ws))
    recomputed = G.synthesis(ws, domain=delta, checkpoint=True)
    (grad_ckpt,) = torch.autograd.grad(recomputed.square().sum(), delta)
    torch.testing.assert_close(grad_ckpt, grad)
    G.channels_last = True
    (grad_nhwc,) = torch.autograd.grad(G.synthesis(ws, domain=delta).square().sum(), delta)
    torch.testing.assert_close(grad_nhwc, grad, rtol=1e-4, atol=1e-6)


def test_translation_moves_the_image():
    """A translation by 4 output pixels (4/64 of the width) shifts the image by 4 pixels (T config:
    equivariant away from the border)."""
    G = tiny_generator("t", size=64)
    G.set_transform()
    ws = G.ws(torch.randn(1, G.style_dim))
    base = G.synthesis(ws)
    G.set_transform(translate=(4 / 64, 0.0))
    moved = G.synthesis(ws)
    inner = (slice(None), slice(None), slice(8, -8), slice(12, -8))
    shifted = (slice(None), slice(None), slice(8, -8), slice(8, -12))
    err = rel_diff(moved[inner], base[shifted])
    assert err < 1e-4 and rel_diff(moved[inner], base[inner]) > 1e-3
