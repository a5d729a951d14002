"""One ``quirks="official"`` training step of each trainer equals the research code's step written
out here (losses and gradients), given the same random draws, on tiny random models.

The research step is formulated directly from the released trainers (MACderRu/HyperDomainNet,
trainers.py and core/loss.py): every generator call maps its z codes, picks its own crossover
index and noise; losses per CLIP encoder summed with the config coefficients; the domain norm is
Σ_l mean(δ_l²). Only the generator, the CLIP encoders, LPIPS, the hypernetwork and the bicubic
resize are shared with the library. The trainer's random draws come from its seeded generator in
the documented order (z, mixing coin, z2, one crossover per call, then noise); here they are drawn
again from a generator with the same seed, or read from the step's recorded draws.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hyperdomainnet.clip import ClipEnsemble, fill_templates
from hyperdomainnet.clip.templates import IMAGENET_TEMPLATES
from hyperdomainnet.inversion import downsample
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.training.config import HypernetConfig, ImageAdaptConfig, TextAdaptConfig
from hyperdomainnet.training.image import ImageTrainer
from hyperdomainnet.training.multi_image import ImageHypernetTrainer
from hyperdomainnet.training.multi_text import TextHypernetTrainer
from hyperdomainnet.training.text import TextTrainer

from conftest import perturb

GEN = "random:32:channel_max=16:n_mlp=2"
SEED = 7
TINY = dict(generator=GEN, clip="random:tiny", device="cpu", grid_samples=2, quirks="official", mixing=1.0)
FAST_INVERSION = dict(invert_steps=2, pnorm_samples=2048, lpips_random_backbone=True)
NET = dict(mapper_clip="random:tiny", width=16, depth=2, head_depth=1)


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))


def generator() -> torch.nn.Module:
    return perturb(load_generator(GEN))


def write_image(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


# ----- the research code's pieces, written out ------------------------------------------------------
def cosine_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(x, y, dim=-1)


def lower_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x[None] − x[:, None]) at the strictly lower-triangular (i > j) positions, as the research mask."""
    n = x.shape[0]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)
    return (x.unsqueeze(0) - x.unsqueeze(1))[mask]


def tt_direction(trg_encoded: torch.Tensor, trg_domain_emb: torch.Tensor) -> torch.Tensor:
    text = lower_pairs(trg_domain_emb)
    if trg_domain_emb.ndim == 3:
        text = text.mean(dim=1)
    return cosine_loss(lower_pairs(trg_encoded), text).mean()


def direction(trg: torch.Tensor, src: torch.Tensor, trg_emb: torch.Tensor, src_emb: torch.Tensor) -> torch.Tensor:
    text = trg_emb - src_emb
    if text.ndim == 3:
        text = text.mean(dim=1)
    return cosine_loss(trg - src, text).mean()


def indomain(trg: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    n = src.shape[0]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)
    return ((src @ src.T)[mask] - (trg @ trg.T)[mask]).pow(2).sum() / n / (n - 1) * 2


def offsets_l2(G, delta: torch.Tensor) -> torch.Tensor:
    layers = torch.split(delta.reshape(-1, delta.shape[-1]), G.domain_layout, dim=1)
    return sum(layer.pow(2).sum() / layer.numel() for layer in layers)


def two_style_latent(G, z: torch.Tensor, z2: torch.Tensor, inject: int) -> torch.Tensor:
    """The rosinality forward of styles [z, z2]: w(z) for the first ``inject`` entries, then w(z2)."""
    w, w2 = G.style(z), G.style(z2)
    return torch.cat([w[:, None].repeat(1, inject, 1), w2[:, None].repeat(1, G.n_latent - inject, 1)], 1)


def noise_sizes(G) -> list[int]:
    return [getattr(G.noises, f"noise_{i}").shape[-1] for i in range(G.num_layers)]


def random_noise(G, batch: int, rng: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(batch, 1, r, r, generator=rng) for r in noise_sizes(G)]


def seeded_noise(G, seeds: list[int]) -> list[torch.Tensor]:
    per_sample = []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        per_sample.append([torch.randn(1, 1, r, r, generator=rng) for r in noise_sizes(G)])
    return [torch.cat(layer) for layer in zip(*per_sample)]


def draw_two_calls(G, batch: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """W+ of G_A's and G_B's calls: z, mixing coin (mixing = 1 ⇒ always mixed), z2, two crossovers."""
    z = torch.randn(batch, G.style_dim, generator=rng)
    torch.rand((), generator=rng)
    z2 = torch.randn(batch, G.style_dim, generator=rng)
    inject_a, inject_b = (int(torch.randint(1, G.n_latent, (), generator=rng)) for _ in range(2))
    assert 1 <= inject_a < G.n_latent and 1 <= inject_b < G.n_latent
    return two_style_latent(G, z, z2, inject_a), two_style_latent(G, z, z2, inject_b)


def research_remap(G, latents: torch.Tensor) -> torch.Tensor:
    """The research generator's mapping of a (B, 18, 512)-shaped input: PixelNorm over dim 1, then
    every EqualLinear + fused leaky ReLU with the bias on the last axis (its pure-PyTorch op)."""
    x = latents * torch.rsqrt(torch.mean(latents ** 2, dim=1, keepdim=True) + 1e-8)
    for layer in list(G.style)[1:]:
        out = F.linear(x, layer.weight * layer.scale)
        x = F.leaky_relu(out + (layer.bias * layer.lr_mul).view(1, 1, -1), negative_slope=0.2) * 2 ** 0.5
    return x


def template_stack(enc, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        t = enc.model.encode_text(enc.tokenizer(fill_templates(prompt, IMAGENET_TEMPLATES)))
    return t / t.norm(dim=-1, keepdim=True)


def assert_step_matches(report: dict[str, float], expected: dict[str, torch.Tensor], coefficients: dict[str, float],
                        grads: list[torch.Tensor], expected_grads: tuple[torch.Tensor, ...]) -> None:
    for name, value in expected.items():
        assert report[name] == pytest.approx(float(value.detach()), rel=1e-4, abs=1e-6), name
    total = sum(coefficients[k] * float(v.detach()) for k, v in expected.items())
    assert report["total"] == pytest.approx(total, rel=1e-4, abs=1e-6)
    scale = max(float(want.abs().max()) for want in expected_grads)
    assert scale > 0
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4 * scale, rtol=1e-3)


# ----- single-domain text ---------------------------------------------------------------------------
def seeded_single_step(trainer) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Give a single-domain trainer's δ seeded values away from 0, run its step 0 from RNG ``SEED``:
    (copies of δ as fresh leaves for the research formulation, the step's report)."""
    with torch.no_grad():
        for i, p in enumerate(trainer.param.layers):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.1)
    leaves = [p.detach().clone().requires_grad_() for p in trainer.param.layers]
    trainer.rng = torch.Generator().manual_seed(SEED)
    return leaves, trainer.train_step(0)


def test_single_text_step_is_the_research_step(clip: ClipEnsemble) -> None:
    losses = {"direction": 1.0, "indomain": 1.5, "offsets_l2": 0.5}
    cfg = TextAdaptConfig(**TINY, source="Photo", target="Sketch", steps=1, batch=3, lr=0.02, losses=losses)
    trainer = TextTrainer(cfg, G=generator(), clip=clip)
    G, enc = trainer.G, clip["random:tiny"]
    leaves, report = seeded_single_step(trainer)

    rng = torch.Generator().manual_seed(SEED)
    ws_a, ws_b = draw_two_calls(G, 3, rng)
    noise_a, noise_b = random_noise(G, 3, rng), random_noise(G, 3, rng)
    delta = torch.cat(leaves)
    with torch.no_grad():
        frozen = G.synthesis(ws_a, noise=noise_a)
        src = enc.encode_images(frozen)
    trainable = G.synthesis(ws_b, domain=delta, noise=noise_b)
    trg = enc.encode_images(trainable)
    t_trg, t_src = template_stack(enc, "Sketch")[None], template_stack(enc, "Photo")[None]
    expected = {"direction": direction(trg, src, t_trg, t_src), "indomain": indomain(trg, src),
                "offsets_l2": offsets_l2(G, delta)}
    total = sum(losses[k] * v for k, v in expected.items())
    assert_step_matches(report, expected, losses, [p.grad for p in trainer.param.layers],
                        torch.autograd.grad(total, leaves))


# ----- single-domain image --------------------------------------------------------------------------
def test_single_image_step_is_the_research_step(tmp_path: Path, clip: ClipEnsemble) -> None:
    losses = {"direction": 1.0, "clip_within": 0.5, "clip_ref": 30.0, "l2_rec": 10.0, "lpips_rec": 10.0}
    ref = write_image(tmp_path / "ref.png", 0)
    cfg = ImageAdaptConfig(**TINY, **FAST_INVERSION, image=str(ref), steps=1, batch=2, lr=0.01, losses=losses)
    trainer = ImageTrainer(cfg, G=generator(), clip=clip, progress=False)
    G, enc = trainer.G, clip["random:tiny"]
    leaves, report = seeded_single_step(trainer)

    w_ref, image = trainer.reference_latent, trainer.reference.image
    rng = torch.Generator().manual_seed(SEED)
    ws_a, ws_b = draw_two_calls(G, 2, rng)
    noise_a, noise_b, noise_ref = random_noise(G, 2, rng), random_noise(G, 2, rng), random_noise(G, 1, rng)
    setup_noise = random_noise(G, 1, torch.Generator().manual_seed(cfg.seed))  # G_A(w_ref), drawn once
    delta = torch.cat(leaves)
    with torch.no_grad():
        inverted_a = G.synthesis(w_ref, noise=setup_noise)
        src = enc.encode_images(G.synthesis(ws_a, noise=noise_a))
        trg_domain_emb, src_domain_emb = enc.encode_images(image), enc.encode_images(inverted_a)
    trg = enc.encode_images(G.synthesis(ws_b, domain=delta, noise=noise_b))
    inverted_b = G.synthesis(w_ref, domain=delta, noise=noise_ref)
    small = downsample(inverted_b, trainer.reference_small.shape[-1])
    expected = {"direction": direction(trg, src, trg_domain_emb, src_domain_emb),
                "clip_within": cosine_loss(trg - trg_domain_emb, src - src_domain_emb).mean(),
                "clip_ref": cosine_loss(enc.encode_images(inverted_b), trg_domain_emb).mean() / len(clip),
                "l2_rec": F.mse_loss(small, trainer.reference_small),
                "lpips_rec": trainer.lpips(small, trainer.reference_small).mean()}
    total = sum(losses[k] * v for k, v in expected.items())
    assert_step_matches(report, expected, losses, [p.grad for p in trainer.param.layers],
                        torch.autograd.grad(total, leaves))


# ----- multi-domain text (td_multiple_resample_and_convex) -------------------------------------------
def test_multi_text_step_is_the_research_step(tmp_path: Path, clip: ClipEnsemble) -> None:
    (tmp_path / "toy.txt").write_text("Sketch - Photo\nAnime Drawing - Photo\nZombie - Human\n")
    losses = {"direction": 1.0, "tt_direction": 0.4}
    cfg = HypernetConfig(**TINY, **NET, domains=str(tmp_path / "toy.txt"), steps=1, batch=4, lr=5e-5, losses=losses,
                         convex_hull=True, resample=True, resample_cos=0.95, crop=0.8, preview_unseen=0)
    trainer = TextHypernetTrainer(cfg, G=generator(), clip=clip)
    G, enc = trainer.G, clip["random:tiny"]
    net = copy.deepcopy(trainer.hypernet)
    plans = []
    plan_step = trainer.plan
    trainer.plan = lambda: plans.append(plan_step()) or plans[-1]
    trainer.rng = torch.Generator().manual_seed(SEED)
    report = trainer.train_step(0)
    plan = plans[0]

    # Recorded draws: domains, Dirichlet weights, noise seeds, crop offsets (research range), resampling.
    side, offsets = int(32 * 0.8), int(32 * (1 - 0.8))
    assert all(0 <= o < offsets for o in (*plan.crop_src, *plan.crop_trg))
    pairs = [line.split(" - ") for line in (tmp_path / "toy.txt").read_text().splitlines()]
    descs = [pairs[int(d)] for d in plan.domains]
    alphas = plan.mixing
    assert torch.allclose(alphas.sum(1), torch.ones(4))

    def hull(x: torch.Tensor) -> torch.Tensor:  # the research convex_hull / convex_hull_small
        shape = (4, 4) + (1,) * (x.ndim - 1)
        y = (x.unsqueeze(0) * alphas.view(shape)).sum(dim=1)
        return y / y.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        raw = enc.model.encode_text(enc.tokenizer([t for t, _ in descs]))
    mapper_input = hull(raw / raw.norm(dim=-1, keepdim=True))
    src_emb = hull(torch.stack([template_stack(enc, s) for _, s in descs]))
    trg_hull = hull(torch.stack([template_stack(enc, t) for t, _ in descs]))
    trg_emb, src_planned = plan.text[enc.name]
    torch.testing.assert_close(src_planned, src_emb, atol=1e-5, rtol=1e-5)
    cos = F.cosine_similarity(trg_emb, trg_hull, dim=-1)
    assert bool((cos >= 0.95 - 1e-5).all()) and bool((cos <= 1 + 1e-5).all())

    rng = torch.Generator().manual_seed(SEED)
    ws_a, ws_b = draw_two_calls(G, 4, rng)
    offsets_tensor = net(mapper_input)
    with torch.no_grad():
        frozen = G.synthesis(ws_a, noise=seeded_noise(G, plan.noise_src))
    trainable = G.synthesis(ws_b, domain=offsets_tensor, noise=seeded_noise(G, plan.noise_trg))
    (ys, xs), (yt, xt) = plan.crop_src, plan.crop_trg
    with torch.no_grad():
        src = enc.model.encode_image(enc.preprocess(frozen[..., ys:ys + side, xs:xs + side]))
    trg = enc.model.encode_image(enc.preprocess(trainable[..., yt:yt + side, xt:xt + side]))
    expected = {"direction": direction(trg, src, trg_emb, src_emb), "tt_direction": tt_direction(trg, trg_emb)}
    total = sum(losses[k] * v for k, v in expected.items())
    params = list(net.parameters())
    assert_step_matches(report, expected, losses, [p.grad for p in trainer.hypernet.parameters()],
                        torch.autograd.grad(total, params))


# ----- multi-domain image (im2im_multiple_base) ------------------------------------------------------
def test_multi_image_step_is_the_research_step(tmp_path: Path, clip: ClipEnsemble) -> None:
    for i in range(2):
        write_image(tmp_path / f"ref{i}.png", i)
    (tmp_path / "refs.txt").write_text("ref0.png\nref1.png\n")
    losses = {"direction": 1.0, "clip_ref": 2.0, "l2_rec": 1.0, "lpips_rec": 1.0, "tt_direction": 1.0,
              "offsets_l2": 2.0}
    cfg = HypernetConfig(**TINY, **NET, **FAST_INVERSION, images=str(tmp_path / "refs.txt"), steps=1, batch=4,
                         lr=5e-5, losses=losses, convex_hull=False, resample=False, crop=1.0)
    trainer = ImageHypernetTrainer(cfg, G=generator(), clip=clip, progress=False)
    G, enc = trainer.G, clip["random:tiny"]
    net = copy.deepcopy(trainer.hypernet)
    calls = []
    losses_step = trainer.losses
    trainer.losses = lambda *args: calls.append(args) or losses_step(*args)
    trainer.rng = torch.Generator().manual_seed(SEED)
    report = trainer.train_step(0)
    _, _, noise_src, noise_trg, refs, ref_seeds = calls[0]

    latents, images, small_images = trainer.latents, trainer.images, trainer.images_small
    setup_noise = random_noise(G, 2, torch.Generator().manual_seed(cfg.seed))  # G_A(w_n), drawn once
    rng = torch.Generator().manual_seed(SEED)
    ws_a, ws_b = draw_two_calls(G, 4, rng)
    with torch.no_grad():
        mapper = enc.model.encode_image(enc.preprocess(images))
        mapper_inputs = (mapper / mapper.norm(dim=-1, keepdim=True))[refs]
        inverted_a = G.synthesis(latents, noise=setup_noise)[refs]
        frozen = G.synthesis(ws_a, noise=seeded_noise(G, noise_src))
        src = enc.encode_images(frozen)
        trg_domain_emb, src_domain_emb = enc.encode_images(images[refs]), enc.encode_images(inverted_a)
    offsets = net(mapper_inputs)
    trg = enc.encode_images(G.synthesis(ws_b, domain=offsets, noise=seeded_noise(G, noise_trg)))
    inverted_b = G.synthesis(research_remap(G, latents[refs]), domain=offsets, noise=seeded_noise(G, ref_seeds))
    small = downsample(inverted_b, small_images.shape[-1])
    expected = {"direction": direction(trg, src, trg_domain_emb, src_domain_emb),
                "clip_ref": cosine_loss(enc.encode_images(inverted_b), trg_domain_emb).mean() / len(clip),
                "l2_rec": F.mse_loss(small, small_images[refs]),
                "lpips_rec": trainer.lpips(small, small_images[refs]).mean(),
                "tt_direction": tt_direction(trg, trg_domain_emb),
                "offsets_l2": offsets_l2(G, offsets)}
    total = sum(losses[k] * v for k, v in expected.items())
    params = list(net.parameters())
    assert_step_matches(report, expected, losses, [p.grad for p in trainer.hypernet.parameters()],
                        torch.autograd.grad(total, params))
    assert not math.isclose(float(expected["l2_rec"].detach()),
                            float(F.mse_loss(downsample(G.synthesis(latents[refs], domain=offsets, noise=seeded_noise(
                                G, ref_seeds)), small_images.shape[-1]), small_images[refs])))
