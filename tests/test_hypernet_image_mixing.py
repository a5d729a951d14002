"""An image HyperDomainNet renders its references' domains as released image domains render: each
sample's W+ code ψ-truncated, then layers 7 and up replaced by the reference's inverted latent —
in ``hdn hypernet eval`` (switchable, stated in the report) and in the trainer's preview grids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import run_cli
from hyperdomainnet.clip import load_clip
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.hypernet.evaluate import inversion_settings
from hyperdomainnet.images import load_image
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.metrics import clip_diversity, clip_quality, target_embeddings
from hyperdomainnet.stylize import InversionOptions, invert_photo

GEN = "random:128:channel_max=8:n_mlp=1"  # 12 W+ layers: the reference replaces 7…11
SEEDS = [4, 5]  # the CLI renders seeds SEED … SEED+N−1
PSI = 0.7
TRAINED = {"invert_steps": 1, "pnorm_samples": 64, "lpips_random_backbone": True}  # the file's training config


@pytest.fixture(scope="module")
def image_hypernet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """A tiny image hypernetwork file (δ far from 0) and a list of two reference images."""
    d = tmp_path_factory.mktemp("image-hypernet")
    G = load_generator(GEN)
    torch.manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=load_clip("random:tiny").embed_dim, width=16, depth=1,
                         head_depth=1)
    with torch.no_grad():
        for head in net.heads:
            head.out.weight.mul_(300)
    path = net.save(d / "hdn.safetensors", {"clip_model": "random:tiny", "input": "image",
                                           "generator": dict(G.identity), "config": TRAINED})
    gen = torch.Generator().manual_seed(1)
    refs = []
    for i in range(2):
        refs.append(d / f"ref{i}.png")
        Image.fromarray((torch.rand(128, 128, 3, generator=gen) * 255).to(torch.uint8).numpy()).save(refs[-1])
    (d / "refs.txt").write_text("ref0.png\nref1.png\n")
    return path, d / "refs.txt", refs


def expected_metrics(net_path: Path, reference: Path, mix: bool) -> dict[str, float]:
    """The research rule written out: w = ψ(w − w̄) + w̄ on every layer, w[7:] = w_ref[7:], G_B(w; δ),
    measured by the metric functions against the reference's embedding."""
    G = load_generator(GEN)
    net = HyperDomainNet.load(net_path).eval()
    mapper = load_clip("random:tiny")
    with torch.no_grad():
        delta = net.domain_vectors(mapper.encode_images(load_image(reference, G.size)).float())  # as trained
        z = torch.cat([torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(s)) for s in SEEDS])
        w = G.mapping(z)[:, None].repeat(1, G.n_latent, 1)
        mean = G.mean_latent()
        w = PSI * (w - mean) + mean
        if mix:
            options = InversionOptions(steps=1, lpips_random_backbone=True, pnorm_samples=64)
            w[:, 7:] = invert_photo(G, reference, options, progress=False).latent[:, 7:]
        images = G.synthesis(w, domain=delta.expand(len(SEEDS), -1), noise_mode="const")
        emb = mapper.encode_images(images).double()
    return {"quality": clip_quality(emb, target_embeddings(mapper, reference=reference)),
            "diversity": clip_diversity(emb)}


def test_eval_renders_references_with_their_style_and_says_so(image_hypernet, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, refs_file, refs = image_hypernet
    reports = {}
    for mix in (True, False):
        out = tmp_path / f"eval-{mix}"
        code, _, err = run_cli(capsys, "hypernet", "eval", "--hypernet", str(path), "--seen", str(refs_file),
                               "--clip", "random:tiny", "--samples", str(len(SEEDS)), "--seed", str(SEEDS[0]),
                               "--truncation", str(PSI), "--noise-mode", "const", "--device", "cpu", "--no-progress",
                               "--out", str(out), *([] if mix else ["--no-style-mixing"]))
        assert code == 0, err
        reports[mix] = json.loads((out / "metrics.json").read_text())
        protocol, markdown = reports[mix]["protocol"], (out / "metrics.md").read_text()
        assert protocol["reference_style_from"] == (7 if mix else None)
        assert ("the reference's style from W+ layer 7" in markdown) == mix
        assert ("no style mixing" in markdown) == (not mix)
    assert reports[True]["protocol"]["reference_inversion"]["steps"] == 1  # as the file says it was trained
    assert reports[False]["protocol"]["reference_inversion"] is None
    for mix in (True, False):
        for entry, reference in zip(reports[mix]["lists"][0]["domains"], refs):
            want = expected_metrics(path, reference, mix)
            assert entry["domain"] == reference.name
            assert entry["quality"] == pytest.approx(want["quality"], abs=1e-5)
            assert entry["diversity"] == pytest.approx(want["diversity"], abs=1e-5)
    mixed, plain = (reports[m]["lists"][0]["domains"][0]["quality"] for m in (True, False))
    assert abs(mixed - plain) > 1e-4  # the rule changes the images


def test_inversion_settings_come_from_the_options_then_the_training_config() -> None:
    options = inversion_settings(TRAINED, lambda_p=0.01)
    got = (options.steps, options.lambda_p, options.pnorm_samples, options.lpips_random_backbone)
    assert got == (1, 0.01, 64, True)
    assert inversion_settings({}, steps=3).steps == 3 and inversion_settings({}).steps == InversionOptions().steps
    for bad in ({"fit": "stretch"}, {"steps": -1}, {"lambda_p": float("nan")}):
        with pytest.raises(HDNError):
            inversion_settings(TRAINED, **bad)


def test_trainer_previews_add_each_reference_with_its_style(image_hypernet, tmp_path: Path) -> None:
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.training.config import HypernetConfig
    from hyperdomainnet.training.multi_image import ImageHypernetTrainer

    _, refs_file, refs = image_hypernet
    cfg = HypernetConfig(generator=GEN, images=str(refs_file), clip="random:tiny", mapper_clip="random:tiny",
                         width=16, depth=1, head_depth=1, batch=2, steps=1, device="cpu", grid_samples=2,
                         invert_steps=TRAINED["invert_steps"], pnorm_samples=TRAINED["pnorm_samples"],
                         lpips_random_backbone=True, convex_hull=False, resample=False, crop=1.0)
    trainer = ImageHypernetTrainer(cfg, clip=ClipEnsemble.from_spec("random:tiny"), progress=False)
    with torch.no_grad():
        for head in trainer.hypernet.heads:
            head.out.weight.mul_(300)
    images, n = trainer.preview()
    names = [r.name for r in refs]
    assert trainer.preview_rows == ["source", *names, *(f"{name} + reference style" for name in names)]
    assert images.shape[0] == len(trainer.preview_rows) * n and n == 2
    G = trainer.G
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(1234))  # the previews' fixed seed
    with torch.no_grad():
        w = G.mapping(z)[:, None].repeat(1, G.n_latent, 1)
        mean = G.mean_latent()
        w = 0.5 * (w - mean) + mean
        for k, reference in enumerate(refs):
            delta = trainer.hypernet.domain_vectors(trainer.inputs[k])
            latent = invert_photo(G, reference, InversionOptions(steps=1, lpips_random_backbone=True,
                                                                 pnorm_samples=64), progress=False).latent
            mixed = torch.cat([w[:, :7], latent[:, 7:].expand(n, -1, -1)], 1)
            want = G.synthesis(mixed, domain=delta.expand(n, -1), noise_mode="const")
            got = images[(3 + k) * n:(4 + k) * n]
            assert torch.allclose(got, want, atol=1e-5)
            plain = images[(1 + k) * n:(2 + k) * n]
            assert not torch.allclose(got, plain, atol=1e-3)


def test_eval_bad_inversion_setting_is_one_line(image_hypernet, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, refs_file, _ = image_hypernet
    code, _, err = run_cli(capsys, "hypernet", "eval", "--hypernet", str(path), "--seen", str(refs_file), "--clip",
                           "random:tiny", "--samples", "2", "--device", "cpu", "--fit", "stretch",
                           "--out", str(tmp_path / "ev"))
    assert code == 1 and "--fit 'stretch'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_image_domain_renders_with_the_reference_style(image_hypernet) -> None:
    from hyperdomainnet.render import Row, render_rows
    from hyperdomainnet.stylize import image_domain

    path, _, refs = image_hypernet
    G = load_generator(GEN)
    options = InversionOptions(steps=1, lpips_random_backbone=True, pnorm_samples=64)
    domain = image_domain(path, refs[1], G, options, progress=False)
    assert domain.style_mixing_from == 7 and domain.metadata["reference"] == "ref1.png"
    net, mapper = HyperDomainNet.load(path), load_clip("random:tiny")
    delta = net.domain_vectors(mapper.encode_images(load_image(refs[1], G.size)).float())[0]
    torch.testing.assert_close(domain.vector, delta)
    latent = invert_photo(G, refs[1], options, progress=False).latent
    z = torch.cat([torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(s)) for s in SEEDS])
    with torch.no_grad():
        w = G.mapping(z)[:, None].repeat(1, G.n_latent, 1)
        w = PSI * (w - G.mean_latent()) + G.mean_latent()
        w[:, 7:] = latent[:, 7:]
        want = G.synthesis(w, domain=delta.expand(len(SEEDS), -1), noise_mode="const")
    got = render_rows(G, [Row("ref1", domain)], SEEDS, truncation=PSI)[0]
    assert torch.allclose(got, want, atol=1e-5)


def test_image_domain_refuses_a_text_hypernetwork(tmp_path: Path, image_hypernet) -> None:
    from hyperdomainnet.stylize import image_domain

    _, _, refs = image_hypernet
    G = load_generator(GEN)
    text = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1).save(
        tmp_path / "text.safetensors", {"clip_model": "random:tiny", "input": "text", "generator": dict(G.identity)})
    with pytest.raises(HDNError, match="not images"):
        image_domain(text, refs[0], G)
