"""Offline first runs: the errors for missing LPIPS backbones and CLIP weights say how to go on."""
from __future__ import annotations

import urllib.error

import pytest

from hyperdomainnet import perceptual
from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.errors import DownloadError, HDNError


def test_lpips_error_names_the_offline_switch(monkeypatch):
    import lpips

    real = lpips.LPIPS

    def offline(*args, pnet_rand=False, **kwargs):
        if not pnet_rand:
            raise urllib.error.URLError("no network")
        return real(*args, pnet_rand=pnet_rand, **kwargs)

    monkeypatch.setattr(lpips, "LPIPS", offline)
    monkeypatch.setattr(perceptual, "_CACHE", {})
    with pytest.raises(HDNError) as info:
        perceptual.load_lpips("alex")
    message = str(info.value)
    assert "--lpips-random-backbone" in message and "\n" not in message
    assert perceptual.load_lpips("alex", random_backbone=True) is not None


def test_clip_error_lists_every_missing_model_and_its_file(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise FileNotFoundError("Failed to download file (open_clip_pytorch_model.bin): offline")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(DownloadError) as info:
        ClipEnsemble.from_spec("ViT-B/32:1.0,random:tiny:0.5,ViT-B/16:1.0")
    message = str(info.value)
    assert "\n" not in message and message.startswith("2 CLIP model(s)")
    for spec, repo, arch in (("ViT-B/32", "timm/vit_base_patch32_clip_224.openai", "ViT-B-32-quickgelu"),
                             ("ViT-B/16", "timm/vit_base_patch16_clip_224.openai", "ViT-B-16-quickgelu")):
        assert f"{spec}: download open_clip_pytorch_model.bin from https://huggingface.co/{repo}" in message
        assert f"file:{arch}:/path/to/open_clip_pytorch_model.bin" in message
    assert "random:tiny" not in message


@pytest.mark.parametrize("package", ["torchmetrics", "torch_fidelity"])
def test_fid_without_the_eval_extra_names_the_install_command(package, monkeypatch):
    import sys

    from hyperdomainnet.metrics import DistributionMetrics

    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(HDNError, match=r"^FID/KID need .*pip install 'hyperdomainnet\[eval\]'"):
        DistributionMetrics()
