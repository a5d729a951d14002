"""Released image domains render as the research code renders them (its Inferencer._mtg_mixing_noise):
w = ψ·(w − w̄) + w̄ on every W+ layer, then layers 7 and up replaced by the checkpoint's style_latents."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from hyperdomainnet.convert import convert_official
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.loaders import load_domain, load_generator
from hyperdomainnet.images import to_pil
from hyperdomainnet.render import Row, render_rows
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality

SEEDS = [3, 11]
PSI = 0.6


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.Tensor, torch.Tensor]:
    """A 1024 px generator (18 W+ layers, 4 channels) and an im2im checkpoint in the released layout."""
    d = tmp_path_factory.mktemp("released")
    G = load_generator("random:1024:channel_max=4:n_mlp=1")
    generator = write_rosinality(G, d / "g.pt")
    gen = torch.Generator().manual_seed(5)
    state = {f"heads.conv_{i}.params_in": 0.3 * torch.randn(1, 1, c, 1, 1, generator=gen)
             for i, c in enumerate(G.domain_layout)}
    style_latents = torch.randn(1, 11, G.style_dim, generator=gen)  # (1, 11, 512) as released: layers 7…17
    path = d / "im2im_sketch.pt"
    torch.save({"model_type": "parameterization", "patch_key": "cin_mult", "state_dict": state, "da_type": "im2im",
                "sg2_params": {"img_size": 1024, "latent_size": 512, "map_layers": 1, "channel_multiplier": 2,
                               "checkpoint_path": "pretrained/StyleGAN2/stylegan2-ffhq-config-f.pt"},
                "style_latents": style_latents}, path)
    delta = torch.cat([state[f"heads.conv_{i}.params_in"].reshape(-1) for i in range(len(G.domain_layout))])
    out = convert_official(path, d / "im2im-sketch.safetensors", generator=load_generator(generator))
    return generator, out, style_latents, delta


def research_render(G: torch.nn.Module, style_latents: torch.Tensor, delta: torch.Tensor, mix: bool) -> torch.Tensor:
    """The research Inferencer on our seeds: truncate every layer, then replace layers ≥ 7."""
    z = torch.cat([torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(s)) for s in SEEDS])
    with torch.no_grad():
        w = G.mapping(z)[:, None].repeat(1, 18, 1)
        mean = G.mean_latent()
        w = PSI * (w - mean) + mean
        if mix:
            w[:, 7:, :] = style_latents
        return G.synthesis(w, domain=delta.expand(len(SEEDS), -1), noise_mode="const")


def test_converted_image_domain_renders_with_the_research_rule(released) -> None:
    generator, out, style_latents, delta = released
    G = load_generator(generator)
    domain = load_domain(out)
    assert domain.style_mixing_from == 7 and domain.metadata["style_mixing_from"] == 7
    got = render_rows(G, [Row("sketch", domain)], SEEDS, truncation=PSI)[0]
    assert torch.allclose(got, research_render(G, style_latents, delta, mix=True), atol=1e-5)
    plain = render_rows(G, [Row("sketch", domain)], SEEDS, truncation=PSI, style_mixing=False)[0]
    assert torch.allclose(plain, research_render(G, style_latents, delta, mix=False), atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the rule changes the image


def test_generate_mixes_by_default_and_says_so(released, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generator, out, style_latents, delta = released
    for flag, mixed in (("--style-mixing", True), ("--no-style-mixing", False)):
        folder = tmp_path / flag
        args = ["generate", "--no-grid", "--domain", str(out), "--generator", str(generator), "--seeds", "3", "--truncation",
                str(PSI), "--device", "cpu", "--precision", "fp32", "--individual", "--out", str(folder)]
        code, _, err = run_cli(capsys, *(args if mixed else [*args, flag]))
        assert code == 0, err
        info = json.loads((folder / "generate.json").read_text())
        assert info["style_mixing"] is mixed
        assert [r["style_mixing_from"] for r in info["rows"]] == [None, 7 if mixed else None]


def test_domain_mix_refuses_a_latent_that_does_not_fit(released) -> None:
    _, out, _, _ = released
    domain = Domain.load(out)
    with pytest.raises(HDNError, match="cannot replace W\\+ layers 7"):
        domain.mix(torch.zeros(2, 14, 512))  # a 256 px generator's codes


def test_eval_mixes_by_default_and_says_so(released, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generator, out, _, _ = released
    for extra, first in (([], 7), (["--no-style-mixing"], None)):
        report = tmp_path / f"m{len(extra)}.json"
        code, _, err = run_cli(capsys, "eval", "--domain", str(out), "--generator", str(generator), "--clip",
                               "random:tiny", "--target", "Sketch", "--templates", "A {}", "--n", "2", "--lpips",
                               "none", "--device", "cpu", *extra, "--out", str(report))
        assert code == 0, err
        assert json.loads(report.read_text())["protocol"]["reference_style_from"] == first
        assert ("no style mixing" in report.with_suffix(".md").read_text()) == (first is None)


def test_the_ui_mixes_by_default_and_has_a_switch(tmp_path: Path) -> None:
    from hyperdomainnet.domain.parameterizations import build_parameterization
    from hyperdomainnet.render import seed_latents
    from hyperdomainnet.stylize import save_domain_with_reference
    from hyperdomainnet.ui import Studio, domain_files, hypernet_files

    spec = "random:128:channel_max=8:n_mlp=1"  # 12 W+ layers: the reference replaces 7…11
    G = load_generator(spec)
    domain = build_parameterization("domain_vector", G).to_domain_file(G, {"target": "ref"})
    w_ref = G.ws(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(4)))
    (tmp_path / "runs").mkdir()
    save_domain_with_reference(tmp_path / "runs" / "domain.safetensors", domain, w_ref)
    studio = Studio([spec], domain_files([tmp_path / "runs"]), hypernet_files([tmp_path / "runs"]), include_zoo=False)
    ws = seed_latents(G, [5], 0.7)
    with torch.no_grad():
        expected = {mix: G.synthesis(torch.cat([ws[:, :7], w_ref[:, 7:]], 1) if mix else ws, noise_mode="const")
                    for mix in (True, False)}
    for mix in (True, False):
        _, adapted, caption = studio.render(spec, "domain file", "runs/domain.safetensors", None, None, seed=5,
                                            truncation=0.7, alpha=1.0, reference_style=mix)
        pixels = torch.tensor(np.asarray(adapted.convert("RGB")), dtype=torch.int16)
        want = torch.tensor(np.asarray(to_pil(expected[mix]).convert("RGB")), dtype=torch.int16)
        assert (pixels - want).abs().max() <= 1
        assert ("reference style from W+ 7" in caption) == mix
