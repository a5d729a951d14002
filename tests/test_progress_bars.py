"""Long commands show one tqdm bar on a terminal; off one, a status line every period of long work."""
from __future__ import annotations

import pytest

from conftest import run_cli
from hyperdomainnet import progress
from hyperdomainnet.clip import load_clip
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.hypernet.evaluate import EvalList, evaluate_lists
from hyperdomainnet.metrics import target_embeddings
from hyperdomainnet.loaders import load_generator

GEN = "random:32:channel_max=16:n_mlp=2"


@pytest.fixture
def domain(tmp_path):
    G = load_generator(GEN)
    return (build_parameterization("domain_vector", G).to_domain_file(G, {"target": "Sketch"})).save(tmp_path / "d.safetensors")


@pytest.mark.parametrize("terminal", [True, False])
def test_generate_and_eval_draw_a_bar_only_on_a_terminal(terminal, domain, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: terminal)
    code, _, err = run_cli(capsys, "generate", "--generator", GEN, "--domain", str(domain), "--n", "3",
                           "--device", "cpu", "--out", str(tmp_path / "g"))
    assert code == 0, err
    assert ("rendering" in err and "6/6" in err) == terminal and (err == "") != terminal
    code, _, err = run_cli(capsys, "eval", "--generator", GEN, "--domain", str(domain), "--clip", "random:tiny",
                           "--n", "3", "--lpips", "none", "--device", "cpu", "--out", str(tmp_path / "m.json"))
    assert code == 0, err
    assert ("evaluating" in err and "3/3" in err) == terminal and (err == "") != terminal


def test_hypernet_evaluation_counts_every_image_of_every_domain(capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    G, encoder = load_generator(GEN), load_clip("random:tiny")
    net = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1)
    labels = ["Sketch", "Pixar", "Zombie"]
    item = EvalList("seen", "toy", "0" * 64, labels, encoder.encode_text(labels).float(),
                    [target_embeddings(encoder, target=t) for t in labels])
    report = evaluate_lists(net, G, encoder, [item], [0, 1])
    assert report["lists"][0]["count"] == 3
    err = capsys.readouterr().err
    assert "evaluating domains" in err and "6/6" in err


def test_off_a_terminal_long_work_prints_a_status_line_every_period(capsys, monkeypatch):
    import time

    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.setattr(progress, "LOG_PERIOD_S", 0.05)
    with progress.progress_bar(2, "evaluating domains", "img") as bar:
        time.sleep(0.3)  # one slow item: lines come while the count stands still
        bar.update(1)
        bar.set_postfix_str("Sketch")
        time.sleep(0.3)
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 4 and all(line.startswith("evaluating domains: ") for line in lines)
    assert " 0/2 img [" in lines[0] and "\r" not in "".join(lines) and "█" not in "".join(lines)
    assert any(" 50% 1/2 img [" in line and "Sketch" in line for line in lines)
    assert " 100% 2/2 img [" in lines[-1]
    monkeypatch.setattr(progress, "LOG_PERIOD_S", 30.0)
    with progress.progress_bar(2, "quick", "img") as bar:  # done within a period: nothing to say
        bar.update(2)
    assert capsys.readouterr().err == ""
