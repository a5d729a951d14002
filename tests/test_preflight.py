"""Pre-flight of downloads: offline, a training run stops at once and lists every file it needs
(where to get it, where it goes) with the random-model hint; it never touches the network here."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from hyperdomainnet import preflight, zoo
from hyperdomainnet.training.config import TextAdaptConfig

RUN = ["adapt", "text", "--generator", "ffhq", "--clip", "ViT-B/32:1.0,ViT-B/16:1.0", "--target", "Sketch",
       "--steps", "1"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, int]]:
    """Every connection attempt fails at once and is recorded; downloads and model loading refuse to start."""
    probes: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float | None = None):
        probes.append(address)
        raise OSError("Name or service not known")

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started after a failed pre-flight")

    monkeypatch.setattr(preflight.socket, "create_connection", refuse)
    monkeypatch.setattr("hyperdomainnet.zoo.download", must_not_run)
    monkeypatch.setattr("hyperdomainnet.training.steps.load_generator", must_not_run)
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    preflight._reachable.cache_clear()
    return probes


def test_offline_run_lists_every_missing_file_at_once(no_network, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *RUN, "--out", str(tmp_path / "run"))
    assert code == 1 and out == ""
    head, generator, clip_32, clip_16, hint = err.splitlines()
    assert head == ("error: 3 file(s) this command needs are not cached here and cannot be downloaded "
                    "(HF_HUB_OFFLINE is set or the network is unreachable):")
    entry = zoo.resolve("ffhq")
    assert generator == f"  generator {entry.name}: download {entry.urls[0]} and place it at {entry.path()}"
    assert str(tmp_path / "home") in generator
    assert clip_32.startswith("  CLIP ViT-B/32: download ") and "https://huggingface.co/" in clip_32
    assert "file:ViT-B-32-quickgelu:" in clip_32 and clip_16.startswith("  CLIP ViT-B/16: download ")
    assert "--generator random:256 --clip random:tiny" in hint
    hosts = [host for host, _ in no_network]
    assert "huggingface.co" not in hosts and hosts == ["drive.google.com"]  # HF_HUB_OFFLINE: no probe there


def test_without_hf_hub_offline_one_probe_per_host_replaces_the_retries(no_network, monkeypatch, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    code, _, err = run_cli(capsys, *RUN, "--out", str(tmp_path / "run"))
    assert code == 1 and "cannot be downloaded (no connection):" in err.splitlines()[0]
    assert sorted(host for host, _ in no_network) == ["drive.google.com", "huggingface.co"]
    assert all(port == 443 for _, port in no_network)


def test_cached_files_are_not_listed_and_a_reachable_source_lets_the_run_go(no_network, monkeypatch,
                                                                           tmp_path: Path) -> None:
    cfg = TextAdaptConfig(generator="ffhq", clip="ViT-B/32:1.0,ViT-B/16:1.0", target="Sketch")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache",
                        lambda repo, name, **kw: "/cache/w" if "patch32" in repo and name.endswith(".bin") else None)
    zoo.resolve("ffhq").path().parent.mkdir(parents=True)
    zoo.resolve("ffhq").path().write_bytes(b"not the published bytes: loading reports it")
    with pytest.raises(preflight.DownloadError) as caught:
        preflight.check_training_downloads(cfg)
    assert [line.split(":")[0] for line in str(caught.value).splitlines()[1:-1]] == ["  CLIP ViT-B/16"]

    class Connection:
        def close(self) -> None:
            pass

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(preflight.socket, "create_connection", lambda address, timeout=None: Connection())
    preflight._reachable.cache_clear()
    preflight.check_training_downloads(cfg)  # online: the downloads will go ahead


def test_a_proxy_or_mirror_is_what_gets_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://huggingface.co/org/repo/resolve/abc/file.pt"
    for name in preflight.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example:8443")
    assert preflight._probe_address(url) == ("hf-mirror.example", 8443)
    assert preflight._probe_address("https://drive.google.com/x") == ("drive.google.com", 443)
    monkeypatch.setenv("HTTPS_PROXY", "proxy.local:3128")
    assert preflight._probe_address(url) == ("proxy.local", 3128)


def test_reference_images_need_the_lpips_backbone_unless_random(no_network, monkeypatch, tmp_path: Path) -> None:
    from hyperdomainnet.training.config import ImageAdaptConfig

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    settings = dict(generator="random:32", clip="random:tiny", image="ref.png")
    with pytest.raises(preflight.DownloadError) as caught:
        preflight.check_training_downloads(ImageAdaptConfig(**settings))
    line = str(caught.value).splitlines()[1]
    assert line.startswith("  LPIPS vgg backbone: download https://download.pytorch.org/models/vgg16-")
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line and "--lpips-random-backbone" in line
    preflight.check_training_downloads(ImageAdaptConfig(**settings, lpips_random_backbone=True))


def test_generate_with_a_zoo_generator_offline_fails_fast(no_network, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "generate", "--generator", "church", "--n", "1", "--device", "cpu", "--out",
                           str(tmp_path / "g"))
    entry = zoo.resolve("church")
    assert code == 1 and err.splitlines()[1] == (f"  generator {entry.name}: download {entry.urls[0]} and place it "
                                                 f"at {entry.path()}")
    assert "random:256" in err.splitlines()[-1]
