"""The numbers a command reports come from what it says it measured: `hdn eval` from the domain at
its strength, `hdn hypernet eval` from each prompt's own δ, and a bf16 training step runs in bf16.
Each expectation is rebuilt in the test from renders and the metric functions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import perturb, run_cli
from hyperdomainnet import load_generator
from hyperdomainnet.clip import ClipEnsemble, load_clip
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.metrics import clip_diversity, clip_quality, target_embeddings
from hyperdomainnet.render import Row, render_rows
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from hyperdomainnet.stylegan2.layers import StyledConv
from hyperdomainnet.training.config import HypernetConfig, TextAdaptConfig
from hyperdomainnet.training.multi_text import TextHypernetTrainer
from hyperdomainnet.training.text import TextTrainer

GEN = "random:32:channel_max=16:n_mlp=2"


def measured(G, row: Row, seeds: list[int], target: str, truncation: float = 1.0) -> dict[str, float]:
    """Quality and diversity of ``row`` rendered here (seeded noise, as the evaluations use)."""
    encoder = load_clip("random:tiny")
    images = render_rows(G, [row], seeds, truncation, noise_mode="random")[0]
    with torch.no_grad():
        emb = encoder.encode_images(images).double()
    return {"quality": clip_quality(emb, target_embeddings(encoder, target=target)),
            "diversity": clip_diversity(emb)}


def test_eval_reports_the_domain_at_its_strength(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = perturb(load_generator(GEN))
    pt = write_rosinality(G, tmp_path / "g.pt")
    G = load_generator(pt)
    P = build_parameterization("domain_vector", G)
    P.load_vector(torch.randn(G.domain_size, generator=torch.Generator().manual_seed(5)) * 0.5)
    path = P.to_domain_file(G, {"target": "Sketch"}).save(tmp_path / "d.safetensors")
    code, _, err = run_cli(capsys, "eval", "--domain", f"{path}*0.8", "--generator", str(pt), "--clip", "random:tiny",
                           "--n", "3", "--seed", "4", "--truncation", "0.7", "--lpips", "none", "--device", "cpu",
                           "--out", str(tmp_path / "m.json"))
    assert code == 0, err
    reported = json.loads((tmp_path / "m.json").read_text())["metrics"]
    domain = Domain.load(path)
    expected = measured(G, Row("d", domain, 0.8), [4, 5, 6], "Sketch", 0.7)
    elsewhere = [measured(G, Row("d", domain, scale), [4, 5, 6], "Sketch", 0.7) for scale in (0.0, 1.0)]
    for name in ("quality", "diversity"):
        assert reported[name] == pytest.approx(expected[name], abs=1e-6), name
        assert all(abs(other[name] - expected[name]) > 1e-4 for other in elsewhere), name  # the test can tell


def test_hypernet_eval_reports_each_prompt_with_its_own_vector(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    G = load_generator(GEN)
    net = HyperDomainNet(G.domain_layout, embed_dim=load_clip("random:tiny").embed_dim, width=16, depth=2,
                         head_depth=1)
    with torch.no_grad():  # far from the near-zero initialisation, so each prompt gets a visible δ
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    file = net.save(tmp_path / "net.safetensors", {"clip_model": "random:tiny", "input": "text",
                                                   "generator": {"name": GEN}})
    (tmp_path / "seen.txt").write_text("Sketch - Photo\nZombie - Human\n")
    (tmp_path / "unseen.txt").write_text("Pixar - Photo\nMosaic - Photo\nWatercolor - Photo\n")
    code, _, err = run_cli(capsys, "hypernet", "eval", "--hypernet", str(file), "--seen", str(tmp_path / "seen.txt"),
                           "--unseen", str(tmp_path / "unseen.txt"), "--clip", "random:tiny", "--samples", "2",
                           "--seed", "7", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "ev"))
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    reported = {d["domain"]: d for item in report["lists"] for d in item["domains"]}
    assert list(reported) == ["Sketch", "Zombie", "Pixar", "Mosaic", "Watercolor"]
    net = HyperDomainNet.load(file)
    for prompt, numbers in reported.items():
        domain = Domain(net.domain_vectors(prompt), "domain_vector", list(net.domain_layout), {"name": GEN},
                        "after_demod", {"target": prompt})
        expected = measured(G, Row(prompt, domain), [7, 8], prompt)
        assert numbers["quality"] == pytest.approx(expected["quality"], abs=1e-6), prompt
        assert numbers["diversity"] == pytest.approx(expected["diversity"], abs=1e-6), prompt
        source = measured(G, Row("source"), [7, 8], prompt)
        assert abs(source["quality"] - expected["quality"]) > 1e-4, prompt  # δ = 0 would be caught


# ----- precision inside the training step ---------------------------------------------------------
def text_trainer(precision: str) -> TextTrainer:
    cfg = TextAdaptConfig(generator=GEN, clip="random:tiny", target="Sketch", batch=2, device="cpu",
                          precision=precision, steps=1, grid_samples=1)
    return TextTrainer(cfg, G=load_generator(GEN), clip=ClipEnsemble.from_spec("random:tiny"))


def hypernet_trainer(precision: str) -> TextHypernetTrainer:
    cfg = HypernetConfig(generator=GEN, domains="train-20", clip="random:tiny", mapper_clip="random:tiny", width=16,
                         depth=2, head_depth=1, batch=2, steps=1, device="cpu", precision=precision, grid_samples=1)
    return TextHypernetTrainer(cfg, G=load_generator(GEN), clip=ClipEnsemble.from_spec("random:tiny"))


def step_dtypes(trainer) -> dict[str, set[torch.dtype]]:
    """The dtypes of the generator's conv outputs (source renders without gradients, adapted with)
    and of the CLIP image features during one training step."""
    seen: dict[str, set[torch.dtype]] = {"source": set(), "adapted": set(), "clip": set()}

    def conv_hook(module, args, output) -> None:
        seen["adapted" if torch.is_grad_enabled() else "source"].add(output.dtype)

    hooks = [m.register_forward_hook(conv_hook) for m in trainer.G.modules() if isinstance(m, StyledConv)]
    hooks += [encoder.model.visual.register_forward_hook(lambda m, a, out: seen["clip"].add(out.dtype))
              for encoder, _ in trainer.clip]
    try:
        trainer.train_step(0)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.parametrize("make", [text_trainer, hypernet_trainer], ids=["text", "hypernet"])
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_training_step_runs_in_the_precision_asked(make, precision: str, dtype: torch.dtype) -> None:
    seen = step_dtypes(make(precision))
    assert seen == {"source": {dtype}, "adapted": {dtype}, "clip": {dtype}}
