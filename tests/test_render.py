"""Rendering: seeds, batched multi-domain passes equal separate renders, frames, videos, prompts."""
from __future__ import annotations

import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from hyperdomainnet.clip import load_clip
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import Parameterization, build_parameterization
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.hypernet.prompts import prompt_domains
from hyperdomainnet.render import (Row, alpha_sweep_rows, interpolation_rows,
                                   parse_seeds, render_rows, seed_latents, write_video)


def randomized(G, kind: str, seed: int, **options) -> Domain:
    P = build_parameterization(kind, G, **options)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in P.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return P.to_domain_file(G, {"target": f"domain {seed}"})


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,9-11") == [1, 5, 9, 10, 11]
    for bad in ("a", "3-1", "-1", "1,,2"):
        with pytest.raises(HDNError, match="bad seeds"):
            parse_seeds(bad)


def test_a_seed_gives_the_same_latent_alone_and_in_a_batch(tiny_G):
    together = seed_latents(tiny_G, [3, 5], truncation=0.7)
    alone = seed_latents(tiny_G, [5], truncation=0.7)
    torch.testing.assert_close(together[1:], alone, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def _separate(G, row: Row, seed: int, noise_mode: str) -> torch.Tensor:
    """One (row, seed) rendered on its own, the straightforward way."""
    ws = seed_latents(G, [seed])
    noise = None
    if noise_mode == "random":
        rng = torch.Generator().manual_seed(seed)
        torch.randn(1, G.style_dim, generator=rng)
        noise = G.make_noise("random", 1, torch.device("cpu"), generator=rng)
    with torch.no_grad():
        if row.domain is None:
            return G.synthesis(ws, noise=noise, noise_mode=noise_mode)[0]
        if row.domain.vector is None:
            P = Parameterization.from_domain_file(row.domain, G)
            return P.synthesize(G, ws, scale=row.scale, noise=noise, noise_mode=noise_mode)[0]
        return G.synthesis(ws, noise=noise, noise_mode=noise_mode, **row.domain.synthesis_kwargs(row.scale))[0]


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_batched_rendering_equals_separate_renders(tiny_G, noise_mode, monkeypatch):
    rows = [Row("source"), Row("a", randomized(tiny_G, "domain_vector", 1)),
            Row("b", randomized(tiny_G, "domain_vector", 2), 0.5),
            Row("offset", randomized(tiny_G, "style_offset", 3), 0.8),
            Row("before", randomized(tiny_G, "domain_vector", 4, placement="before_demod")),
            Row("cout", randomized(tiny_G, "cout_mult", 5), 0.7)]
    seeds = [0, 7, 3]
    calls = []
    synthesis = tiny_G.synthesis
    monkeypatch.setattr(tiny_G, "synthesis", lambda ws, **kw: calls.append(ws.shape[0]) or synthesis(ws, **kw))
    images = render_rows(tiny_G, rows, seeds, noise_mode=noise_mode, batch_size=16)
    # one pass for the 4 after-demod vector rows (12 images), one for before_demod, one for cout_mult
    assert sorted(calls) == [3, 3, 12]
    monkeypatch.undo()
    assert images.shape == (len(rows), len(seeds), 3, tiny_G.size, tiny_G.size)
    for r, row in enumerate(rows):
        for i, seed in enumerate(seeds):
            torch.testing.assert_close(images[r, i], _separate(tiny_G, row, seed, noise_mode), atol=2e-5, rtol=1e-5)
    assert (images[1] - images[0]).abs().max() > 1e-2  # the domains change the images
    # chunking across rows gives the same images
    torch.testing.assert_close(render_rows(tiny_G, rows, seeds, noise_mode=noise_mode, batch_size=5), images,
                               atol=2e-5, rtol=1e-5)


def test_random_noise_is_seeded_and_differs_from_const(tiny_G):
    const = render_rows(tiny_G, [Row("source")], [0], noise_mode="const")
    random1 = render_rows(tiny_G, [Row("source")], [0], noise_mode="random")
    random2 = render_rows(tiny_G, [Row("source")], [0], noise_mode="random")
    assert torch.equal(random1, random2)
    assert (random1 - const).abs().max() > 1e-3


def test_rows_for_another_generator_are_refused(tiny_G):
    from hyperdomainnet import load_generator

    other = randomized(load_generator("random:64:channel_max=16:n_mlp=2"), "domain_vector", 1)
    with pytest.raises(HDNError, match="--generator"):
        render_rows(tiny_G, [Row("x", other)], [0])


def test_interpolation_and_alpha_sweep_rows(tiny_G):
    a, b = randomized(tiny_G, "domain_vector", 1), randomized(tiny_G, "domain_vector", 2)
    rows = interpolation_rows(a, b, 5, scales=(1.0, 0.5))
    assert len(rows) == 5
    assert torch.equal(rows[0].domain.vector, a.vector)
    assert torch.equal(rows[-1].domain.vector, 0.5 * b.vector)
    torch.testing.assert_close(rows[2].domain.vector, 0.5 * a.vector + 0.25 * b.vector)
    sweep = alpha_sweep_rows(Row("a", a, 0.5), 3, 0.0, 2.0)
    assert [r.scale for r in sweep] == [0.0, 0.5, 1.0] and all(r.domain is a for r in sweep)
    assert sweep[2].label == "a*2.000"
    with pytest.raises(HDNError, match="needs a domain"):
        alpha_sweep_rows(Row("source"), 3, 0.0, 1.0)
    with pytest.raises(HDNError, match="--frames"):
        interpolation_rows(a, b, 1)
    images = render_rows(tiny_G, [Row("source"), *sweep[:1]], [0, 1])
    torch.testing.assert_close(images[1], images[0], atol=1e-6, rtol=0)  # α = 0 is the source


def _frames(count: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 12, 20, 3), dtype=np.uint8)


def test_write_gif(tmp_path):
    path = write_video(_frames(), tmp_path / "v.gif", fps=10)
    assert iio.improps(path).n_images == 4
    meta = iio.immeta(path)
    assert meta["loop"] == 0 and meta["duration"] == 100


def test_write_mp4(tmp_path):
    path = write_video(_frames(6), tmp_path / "v.mp4", fps=12)
    back = iio.imread(path, plugin="FFMPEG", index=None)
    assert back.shape == (6, 12, 20, 3)


def test_mp4_without_ffmpeg_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(HDNError, match="pip install imageio-ffmpeg") as info:
        write_video(_frames(), tmp_path / "v.mp4")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "v.mp4").exists()
    with pytest.raises(HDNError, match=".gif or .mp4"):
        write_video(_frames(), tmp_path / "v.avi")


def _hypernet(G, tmp_path, input_kind: str = "text"):
    torch.manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1)
    with torch.no_grad():
        for head in net.heads:
            head.out.weight.mul_(300)
    path = net.save(tmp_path / "hdn.safetensors", {"clip_model": "random:tiny", "input": input_kind,
                                                   "generator": dict(G.identity)})
    return net, path


def test_prompt_domains_follow_the_official_inference(tiny_G, tmp_path):
    net, path = _hypernet(tiny_G, tmp_path)
    domains = prompt_domains(path, ["Anime Painting", "Pixar"])
    expected = net.eval().domain_vectors(load_clip("random:tiny").encode_text(["Anime Painting", "Pixar"]))
    assert [d.metadata["target"] for d in domains] == ["Anime Painting", "Pixar"]
    for domain, vector in zip(domains, expected):
        assert domain.kind == "domain_vector" and domain.metadata["hypernet"] == str(path)
        torch.testing.assert_close(domain.vector, vector)
    assert (domains[0].vector - domains[1].vector).abs().max() > 1e-4
    assert domains[0].generator["name"] == tiny_G.identity["name"]


def test_image_hypernet_refuses_text(tiny_G, tmp_path):
    _, path = _hypernet(tiny_G, tmp_path, input_kind="image")
    with pytest.raises(HDNError, match="not text"):
        prompt_domains(path, ["Pixar"])
