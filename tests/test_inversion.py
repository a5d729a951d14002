"""II2S inversion: P-norm statistics and their cache, the optimisation, the latent cache, LPIPS loading."""
from __future__ import annotations

import urllib.error

import pytest
import torch

from hyperdomainnet import inversion, load_generator, perceptual
from hyperdomainnet.errors import HDNError
from hyperdomainnet.images import save_image
from hyperdomainnet.inversion import (PNormStats, cached_invert, invert, mapped_latents, pnorm_stats,
                                      pulse_space, weights_sha256)
from hyperdomainnet.perceptual import load_lpips

from conftest import perturb

SAMPLES = 4096


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def lpips_net():
    return load_lpips("vgg", "cpu", random_backbone=True)


def count_computes(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = PNormStats.compute.__func__

    def counting(cls, G, n_samples=inversion.PNORM_SAMPLES, seed=0, chunk=inversion.PNORM_CHUNK):
        calls.append(n_samples)
        return original(cls, G, n_samples, seed, chunk)

    monkeypatch.setattr(PNormStats, "compute", classmethod(counting))
    return calls


def test_whitened_samples_have_unit_mean_square_per_dimension(tiny_G):
    assert torch.equal(pulse_space(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([-5.0, 0.0, 2.0]))
    stats = PNormStats.compute(tiny_G, SAMPLES, seed=0, chunk=1000)
    p = torch.cat([pulse_space(w) for w in mapped_latents(tiny_G, SAMPLES, seed=0, chunk=1000)])
    white = stats.whiten(torch.cat(list(mapped_latents(tiny_G, SAMPLES, seed=0, chunk=1000)))).double()
    per_dim = white.pow(2).mean(0)
    assert torch.allclose(per_dim, torch.full_like(per_dim, (SAMPLES - 1) / SAMPLES), atol=0.02)
    cov = white.T @ white / SAMPLES
    assert (cov - torch.diag(torch.diagonal(cov))).abs().max() < 0.02
    assert not torch.allclose((p - p.mean(0)).pow(2).mean(0), torch.ones(p.shape[1]), atol=0.5)
    eye = stats.components @ stats.components.T
    assert torch.allclose(eye, torch.eye(eye.shape[0]), atol=1e-4)
    assert torch.all(stats.std[:-1] >= stats.std[1:])
    latent = torch.randn(2, tiny_G.n_latent, tiny_G.style_dim)
    expected = ((pulse_space(latent[1]) - stats.mean) @ stats.components.T / stats.std).pow(2).mean()
    assert stats.loss(latent).shape == (2,)
    assert torch.allclose(stats.loss(latent)[1], expected)


def test_pnorm_stats_are_cached_per_mapping_network(tiny_G, monkeypatch, cache_home):
    calls = count_computes(monkeypatch)
    first = pnorm_stats(tiny_G, 2048)
    assert calls == [2048] and len(list((cache_home / "pnorm").glob("*.safetensors"))) == 1
    again = pnorm_stats(tiny_G, 2048)
    assert calls == [2048]
    assert torch.equal(first.components, again.components) and torch.equal(first.std, again.std)
    other = load_generator("random:32:channel_max=16:n_mlp=2:seed=5")
    pnorm_stats(other, 2048)
    assert calls == [2048, 2048]
    path = next(p for p in (cache_home / "pnorm").glob("*.safetensors")
                if p.name.startswith(weights_sha256(tiny_G, "style.")[:16]))
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        repaired = pnorm_stats(tiny_G, 2048)
    assert len(calls) == 3 and torch.equal(repaired.std, first.std)


def test_invert_recovers_an_image_the_generator_made(tiny_G, lpips_net):
    stats = PNormStats.compute(tiny_G, SAMPLES)
    w_true = tiny_G.ws(torch.randn(1, tiny_G.style_dim, generator=torch.Generator().manual_seed(3)))
    target = tiny_G.synthesis(w_true)
    result = invert(tiny_G, target, steps=30, lpips_net=lpips_net, pnorm=stats, progress=False)
    assert result.latent.shape == (1, tiny_G.n_latent, tiny_G.style_dim)
    assert len(result.losses) == 30 and set(result.losses[0]) == set(inversion.LOSS_KEYS)
    assert result.losses[-1]["total"] < 0.5 * result.losses[0]["total"]
    mean_ws = tiny_G.mean_latent()[None, None].repeat(1, tiny_G.n_latent, 1)
    err_mean = (tiny_G.synthesis(mean_ws) - target).pow(2).mean()
    err_final = (tiny_G.synthesis(result.latent) - target).pow(2).mean()
    assert err_final < 0.5 * err_mean
    assert torch.allclose(result.reconstruction, tiny_G.synthesis(result.latent))
    assert result.losses[0]["mse"] == pytest.approx(err_mean.item(), rel=1e-4)


def test_invert_handles_each_image_of_a_batch_independently(tiny_G, lpips_net):
    stats = PNormStats.compute(tiny_G, 2048)
    targets = tiny_G.synthesis(tiny_G.ws(torch.randn(2, tiny_G.style_dim, generator=torch.Generator().manual_seed(1))))
    kwargs = dict(steps=3, lpips_net=lpips_net, pnorm=stats, progress=False)
    both = invert(tiny_G, targets, **{**kwargs, "progress": True})
    second = invert(tiny_G, targets[1:], **kwargs)
    assert torch.allclose(both.latent[1], second.latent[0], atol=1e-5)
    big = torch.nn.functional.interpolate(targets[:1], scale_factor=2, mode="nearest")
    assert invert(tiny_G, big, **kwargs).reconstruction.shape == (1, 3, tiny_G.size, tiny_G.size)


def test_random_noise_mode_is_reproducible_with_a_generator(tiny_G, lpips_net):
    stats = PNormStats.compute(tiny_G, 2048)
    target = tiny_G.synthesis(tiny_G.ws(torch.randn(1, tiny_G.style_dim, generator=torch.Generator().manual_seed(4))))
    kwargs = dict(steps=3, lpips_net=lpips_net, pnorm=stats, progress=False)
    runs = [invert(tiny_G, target, noise_mode="random", generator=torch.Generator().manual_seed(s), **kwargs)
            for s in (0, 0, 1)]
    assert torch.equal(runs[0].latent, runs[1].latent) and not torch.equal(runs[0].latent, runs[2].latent)
    assert not torch.equal(runs[0].latent, invert(tiny_G, target, **kwargs).latent)


def test_cached_invert_reuses_the_latent(tiny_G, monkeypatch, tmp_path, cache_home):
    target = tiny_G.synthesis(tiny_G.ws(torch.randn(1, tiny_G.style_dim, generator=torch.Generator().manual_seed(2))))
    image = save_image(target, tmp_path / "ref.png")
    runs: list[int] = []
    original = inversion.invert
    monkeypatch.setattr(inversion, "invert", lambda *a, **k: runs.append(k["steps"]) or original(*a, **k))
    kwargs = dict(steps=4, lpips_random_backbone=True, pnorm_samples=2048, progress=False)
    first = cached_invert(tiny_G, image, **kwargs)
    assert runs == [4] and not first.cached
    files = list((cache_home / "latents").glob("ref-*.safetensors"))
    assert len(files) == 1
    second = cached_invert(tiny_G, image, **kwargs)
    assert runs == [4] and second.cached
    assert torch.equal(second.latent, first.latent)
    assert [v for h in second.losses for v in h.values()] == pytest.approx(
        [v for h in first.losses for v in h.values()])
    assert torch.allclose(second.reconstruction, first.reconstruction)
    cached_invert(tiny_G, image, **{**kwargs, "steps": 5})
    assert runs == [4, 5]
    save_image(-target, image)
    cached_invert(tiny_G, image, **kwargs)
    assert runs == [4, 5, 4]
    perturb(tiny_G, seed=9)
    cached_invert(tiny_G, image, **kwargs)
    assert runs == [4, 5, 4, 4] and len(list((cache_home / "latents").glob("*.safetensors"))) == 4


def test_load_lpips_is_frozen_and_cached(lpips_net):
    assert load_lpips("vgg", "cpu", random_backbone=True) is lpips_net
    assert not lpips_net.training and not any(p.requires_grad for p in lpips_net.parameters())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert lpips_net(x, x).abs().max() < 1e-6 and lpips_net(x, x.flip(-1)).min() > 0
    with pytest.raises(ValueError):
        load_lpips("resnet")


def test_load_lpips_offline_gives_a_one_line_error(monkeypatch):
    import lpips.pretrained_networks as pn

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(pn.tv, "vgg16", offline)
    monkeypatch.setattr(perceptual, "_CACHE", {})
    with pytest.raises(HDNError) as exc:
        load_lpips("vgg", "cpu", random_backbone=False)
    assert "\n" not in str(exc.value) and "internet" in str(exc.value)


def test_invert_starts_from_a_given_code(tiny_G, lpips_net):
    stats = PNormStats.compute(tiny_G, 2048)
    target = tiny_G.synthesis(tiny_G.ws(torch.randn(2, tiny_G.style_dim, generator=torch.Generator().manual_seed(6))))
    start = tiny_G.ws(torch.randn(2, tiny_G.style_dim, generator=torch.Generator().manual_seed(7)))
    kwargs = dict(lpips_net=lpips_net, pnorm=stats, progress=False)
    assert torch.equal(invert(tiny_G, target, steps=0, init=start, **kwargs).latent, start)
    one = invert(tiny_G, target, steps=1, init=start, **kwargs)
    assert one.losses[0]["mse"] == pytest.approx((tiny_G.synthesis(start) - target).pow(2).mean((1, 2, 3)).sum().item(),
                                                 rel=1e-4)
    assert 0 < (one.latent - start).abs().max() <= 0.01 + 1e-6  # one Adam step of lr 0.01
    with pytest.raises(ValueError, match="init must have shape"):
        invert(tiny_G, target, steps=1, init=start[:1], **kwargs)
