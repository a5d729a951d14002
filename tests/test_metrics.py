"""Metrics against hand-computed values: CLIP Quality/Diversity, LPIPS diversity, FID/KID."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from hyperdomainnet.clip import IMAGENET_TEMPLATES, load_clip
from hyperdomainnet.errors import HDNError
from hyperdomainnet.metrics import (DistributionMetrics, clip_diversity, clip_quality, evaluate_samples,
                                   lpips_diversity, markdown_table, target_embeddings)
from hyperdomainnet.render import Row, render_rows


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def test_clip_quality_is_the_mean_cosine_over_images_and_templates():
    images, targets = _unit(5, 8, 0), _unit(3, 8, 1)
    total = 0.0
    for n in range(5):
        for k in range(3):
            total += sum(float(images[n, e] * targets[k, e]) for e in range(8))
    expected = total / (5 * 3)
    assert clip_quality(images.float(), targets.float()) == pytest.approx(expected, abs=1e-6)
    # cosines: scaling the embeddings changes nothing
    assert clip_quality(images * 3, targets * 0.5) == pytest.approx(expected, abs=1e-12)


def test_clip_diversity_is_the_mean_over_pairs_of_one_minus_cosine():
    images = _unit(6, 8, 2)
    values = [1 - float(images[i] @ images[j]) for i in range(6) for j in range(i + 1, 6)]
    assert len(values) == 15
    assert clip_diversity(images.float()) == pytest.approx(sum(values) / 15, abs=1e-6)
    assert clip_diversity(torch.ones(4, 8)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        clip_diversity(images[:1])


class MeanAbs(nn.Module):
    """A stand-in LPIPS: mean |a − b| per pair, shaped (B, 1, 1, 1) like lpips.LPIPS."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))[:, None, None, None]


def test_lpips_diversity_one_cluster_and_nearest_center_clusters():
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    d = lambda a, b: float((a - b).abs().mean())  # noqa: E731
    pairs = [d(images[i], images[j]) for i in range(5) for j in range(i + 1, 5)]
    assert lpips_diversity(images, MeanAbs(), batch_size=3) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)

    centers = torch.stack([images[0] + 0.01, images[3] - 0.01])
    labels = [min(range(2), key=lambda k: d(images[n], centers[k])) for n in range(5)]
    means = []
    for k in range(2):
        members = [n for n in range(5) if labels[n] == k]
        within = [d(images[i], images[j]) for a, i in enumerate(members) for j in members[a + 1:]]
        if within:
            means.append(sum(within) / len(within))
    assert lpips_diversity(images, MeanAbs(), centers=centers, batch_size=4) == pytest.approx(
        sum(means) / len(means), abs=1e-6)


def test_lpips_diversity_with_the_real_lpips_network():
    from hyperdomainnet.perceptual import load_lpips

    model = load_lpips("alex", random_backbone=True)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    assert lpips_diversity(images, model) > 0
    assert lpips_diversity(images[:1].repeat(3, 1, 1, 1), model) == pytest.approx(0.0, abs=1e-7)


def test_target_embeddings_fill_the_templates():
    encoder = load_clip("random:tiny")
    emb = target_embeddings(encoder, "Golden Car")
    assert emb.shape == (len(IMAGENET_TEMPLATES), encoder.embed_dim)
    torch.testing.assert_close(emb[0], encoder.encode_text([IMAGENET_TEMPLATES[0].format("Golden Car")])[0])
    single = target_embeddings(encoder, "Golden Car", templates=("A {}",))
    torch.testing.assert_close(single, encoder.encode_text(["A Golden Car"]))
    with pytest.raises(HDNError, match="--target"):
        target_embeddings(encoder, None)


class ChannelStats(nn.Module):
    """A stand-in for Inception: uint8 images → per-channel mean and overall mean square / 255."""

    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8
        f = x.double() / 255
        return torch.cat([f.mean(dim=(2, 3)), (f ** 2).mean(dim=(1, 2, 3))[:, None]], dim=1).float()


def _images(count: int, seed: int, shift: int) -> tuple[torch.Tensor, np.ndarray]:
    """Images in [−1, 1] that round-trip to uint8 exactly, and their stand-in features."""
    u8 = torch.randint(0, 200, (count, 3, 6, 6), generator=torch.Generator().manual_seed(seed)) + shift
    return u8.float() / 127.5 - 1, ChannelStats()(u8.to(torch.uint8)).double().numpy()


def test_fid_and_kid_match_hand_computations():
    fake, f_fake = _images(6, 5, 0)
    real, f_real = _images(6, 6, 40)
    metrics = DistributionMetrics(feature=ChannelStats(), kid_subset_size=1000, kid_subsets=3)
    metrics.update(real[:4], real=True)
    metrics.update(real[4:], real=True)
    metrics.update(fake, real=False)
    result = metrics.compute()

    mu1, mu2 = f_real.mean(0), f_fake.mean(0)
    s1, s2 = np.cov(f_real, rowvar=False), np.cov(f_fake, rowvar=False)
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert result["fid"] == pytest.approx(fid, rel=1e-4)

    m, d = 6, f_real.shape[1]
    k = lambda x, y: (float(x @ y) / d + 1) ** 3  # noqa: E731
    xx = sum(k(f_real[i], f_real[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(f_fake[i], f_fake[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(f_real[i], f_fake[j]) for i in range(m) for j in range(m)) / (m * m)
    assert result["kid_subset_size"] == 6  # capped by the image counts: each subset is everything
    assert result["kid"] == pytest.approx(xx + yy - 2 * xy, rel=1e-4, abs=1e-9)
    assert result["kid_std"] == pytest.approx(0.0, abs=1e-6)
    assert result["n_reference"] == 6


def test_fid_needs_two_images_per_side():
    metrics = DistributionMetrics(feature=ChannelStats())
    metrics.update(_images(1, 0, 0)[0], real=True)
    metrics.update(_images(3, 1, 0)[0], real=False)
    with pytest.raises(HDNError, match="at least 2"):
        metrics.compute()


def test_offline_inception_is_a_one_line_error(monkeypatch):
    from torchmetrics.image import fid

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fid.NoTrainInceptionV3, "__init__", offline)
    with pytest.raises(HDNError, match="Inception") as info:
        DistributionMetrics()
    assert "\n" not in str(info.value) and "--reference-dir" in str(info.value)


def test_evaluate_samples_measures_the_rendered_domain(tiny_G):
    encoder = load_clip("random:tiny")
    delta = torch.randn(tiny_G.domain_size, generator=torch.Generator().manual_seed(0)) * 0.3
    from hyperdomainnet.domain.files import Domain

    row = Row("d", Domain(delta, "domain_vector", tiny_G.domain_layout, dict(tiny_G.identity)))
    target = target_embeddings(encoder, "Pixar", templates=("{}",))
    distribution = DistributionMetrics(feature=ChannelStats())
    distribution.update(torch.rand(4, 3, 32, 32) * 2 - 1, real=True)
    seeds = list(range(5))
    result = evaluate_samples(tiny_G, row, encoder, target, seeds, noise_mode="random", batch_size=2,
                              lpips=MeanAbs(), lpips_samples=3, distribution=distribution)
    images = render_rows(tiny_G, [row], seeds, noise_mode="random")[0]
    with torch.no_grad():
        emb = encoder.encode_images(images)
    assert result["quality"] == pytest.approx(clip_quality(emb, target), abs=1e-5)
    assert result["diversity"] == pytest.approx(clip_diversity(emb), abs=1e-5)
    assert result["lpips_diversity"] == pytest.approx(lpips_diversity(images[:3], MeanAbs()), abs=1e-6)
    assert result["fid"] > 0 and "kid" in result and result["n_reference"] == 4


def test_markdown_table_puts_runs_side_by_side():
    protocol = {"clip_model": "ViT-B/16", "templates": "imagenet (79)", "target": "Pixar", "samples": 500,
                "truncation": 1.0, "seeds": "0-499"}
    reports = [{"protocol": protocol, "metrics": {"quality": 0.28906, "diversity": 0.2585}},
               {"protocol": {**protocol, "target": "Anime | Painting"}, "metrics": {"quality": 0.3, "fid": 12.5}}]
    lines = markdown_table(reports, ["pixar", "anime"]).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | target | CLIP")
    assert "| pixar | Pixar | ViT-B/16 | imagenet (79) | 500 | 1.0 | 0-499 | 0.2891 | 0.2585 | — | — | — |" == lines[2]
    assert "Anime \\| Painting" in lines[3] and "12.5000" in lines[3]
