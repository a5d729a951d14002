"""Photos in adapted domains: style mixing, reference latents in domain files, stylize, hdn invert / stylize."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from hyperdomainnet import images, load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.domain import Domain
from hyperdomainnet.domain.parameterizations import Parameterization, build_parameterization
from hyperdomainnet.errors import HDNError
from hyperdomainnet.images import load_image
from hyperdomainnet.inversion import cached_invert
from hyperdomainnet.stylize import (MIX_FROM, REFERENCE_LATENT, InversionOptions, reference_latent,
                                    save_domain_with_reference, style_mix, stylize)

from conftest import run_cli

GEN = "random:32:channel_max=16:n_mlp=2"
FAST = InversionOptions(steps=3, lpips_random_backbone=True, pnorm_samples=2048)
FAST_CLI = ["--steps", "3", "--pnorm-samples", "2048", "--lpips-random-backbone", "--no-progress", "--device", "cpu"]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def G() -> torch.nn.Module:
    return load_generator(GEN)


def write_photo(path: Path, seed: int = 0, size: tuple[int, int] = (40, 52)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_domain(path: Path, G: torch.nn.Module, with_reference: bool = True, kind: str = "domain_vector") -> Path:
    P = build_parameterization(kind, G)
    with torch.no_grad():
        for t in P.parameters():
            t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(t.numel())) * 0.3)
    domain = P.to_domain_file(G, {"trainer": "test"})
    if not with_reference:
        domain.save(path)
        return path
    w_ref = G.ws(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(9)))
    return save_domain_with_reference(path, domain, w_ref)


def test_style_mix_takes_fine_layers_from_the_reference(G) -> None:
    ws = G.ws(torch.randn(3, G.style_dim))
    ref = G.ws(torch.randn(1, G.style_dim))
    mixed = style_mix(ws, ref)
    assert MIX_FROM == 7 and mixed.shape == ws.shape
    assert torch.equal(mixed[:, :7], ws[:, :7]) and torch.equal(mixed[:, 7:], ref[:, 7:].expand(3, -1, -1))
    assert not torch.equal(ws[:, 7:], mixed[:, 7:])
    with pytest.raises(HDNError, match="reference latent"):
        style_mix(ws, ref[:, :5])


def test_reference_latent_round_trips_through_the_domain_file(tmp_path: Path, G, capsys) -> None:
    path = write_domain(tmp_path / "d.safetensors", G)
    domain = Domain.load(path)
    assert reference_latent(domain).shape == (1, G.n_latent, G.style_dim)
    assert domain.metadata == {"trainer": "test", "style_mixing_from": 7} and domain.kind == "domain_vector"
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == {"vector", REFERENCE_LATENT}
    P = Parameterization.from_domain_file(domain, G)
    assert torch.equal(P.vector().detach(), domain.vector)
    assert reference_latent(Domain.load(write_domain(tmp_path / "plain.safetensors", G, False))) is None
    assert main(["info", str(path)]) == 0 and "domain_vector" in capsys.readouterr().out


def test_stylize_renders_the_inverted_photo_in_the_domain(tmp_path: Path, G) -> None:
    photo = write_photo(tmp_path / "photo.jpg")
    domain = Domain.load(write_domain(tmp_path / "d.safetensors", G))
    result = stylize(G, domain, photo, FAST, progress=False)
    inverted = cached_invert(G, photo, steps=3, lpips_random_backbone=True, pnorm_samples=2048, progress=False)
    assert inverted.cached and torch.equal(result.inverted.latent, inverted.latent)
    assert torch.equal(result.inverted.image, load_image(photo, 32))
    P = Parameterization.from_domain_file(domain, G)
    with torch.no_grad():
        torch.testing.assert_close(result.adapted, P.synthesize(G, inverted.latent))
        torch.testing.assert_close(result.mixed, P.synthesize(G, style_mix(inverted.latent, reference_latent(domain))))
        torch.testing.assert_close(result.inverted.reconstruction, G.synthesis(inverted.latent))
    assert not torch.allclose(result.adapted, result.inverted.reconstruction)
    assert result.strip().shape == (4, 3, 32, 32)
    assert stylize(G, domain, photo, FAST, mix=False, progress=False).mixed is None
    half = stylize(G, domain, photo, FAST, scale=0.5, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(half.adapted, P.synthesize(G, inverted.latent, 0.5))
    plain = Domain.load(write_domain(tmp_path / "plain.safetensors", G, False, kind="cout_mult"))
    assert stylize(G, plain, photo, FAST, progress=False).mixed is None
    with pytest.raises(HDNError, match="no reference latent"):
        stylize(G, plain, photo, FAST, mix=True, progress=False)


def test_hdn_invert_writes_latent_and_preview(tmp_path: Path, capsys, G) -> None:
    photo = write_photo(tmp_path / "photo.png", size=(60, 45))
    out = tmp_path / "inv"
    code, stdout, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(out), *FAST_CLI)
    assert code == 0, err
    assert "photo-latent.safetensors" in stdout and "cached" not in stdout and "by ii2s" in stdout
    with safe_open(str(out / "photo-latent.safetensors"), framework="pt") as fh:
        latent = fh.get_tensor("latent")
    expected = cached_invert(G, photo, steps=3, lpips_random_backbone=True, pnorm_samples=2048, progress=False)
    assert torch.equal(latent, expected.latent)
    assert Image.open(out / "photo-reconstruction.png").size[0] == 2 * 34 + 2  # + the headers' band below
    code, _, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(out), *FAST_CLI)
    assert code == 1 and "--force" in err
    code, stdout, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(out), "--force",
                                *FAST_CLI)
    assert code == 0 and "(cached)" in stdout, err
    code, _, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(tmp_path / "pad"),
                           "--fit", "pad", *FAST_CLI)
    assert code == 0, err
    with safe_open(str(tmp_path / "pad" / "photo-latent.safetensors"), framework="pt") as fh:
        assert not torch.equal(fh.get_tensor("latent"), latent)


def test_hdn_invert_align_uses_the_aligned_face(tmp_path: Path, capsys, monkeypatch, cache_home) -> None:
    from hyperdomainnet import alignment

    photo = write_photo(tmp_path / "face.png", size=(120, 120))
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54] = (40, 50), (60, 50), (42, 70), (58, 70)
    monkeypatch.setattr(alignment, "detect_landmarks", lambda img: lm)
    code, _, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(tmp_path / "o"),
                           "--align", *FAST_CLI)
    assert code == 0, err
    aligned = list((cache_home / "aligned").glob("*.png"))
    assert len(aligned) == 1 and Image.open(aligned[0]).size == (32, 32)
    preview = np.asarray(Image.open(tmp_path / "o" / "face-reconstruction.png"))[2:34, 2:34]
    assert np.array_equal(preview, np.asarray(Image.open(aligned[0])))


def test_hdn_stylize_end_to_end(tmp_path: Path, capsys, G) -> None:
    photo = write_photo(tmp_path / "photo.jpg")
    domain = write_domain(tmp_path / "d.safetensors", G)
    out = tmp_path / "styl"
    code, stdout, err = run_cli(capsys, "stylize", "--domain", str(domain), "--image", str(photo), "--out", str(out),
                                *FAST_CLI)
    assert code == 0, err
    strip = np.asarray(Image.open(out / "photo-stylized.png"))
    assert strip.shape[1:] == (4 * 34 + 2, 3) and strip.shape[0] > 34 + 2  # + the headers' band below
    assert np.array_equal(strip, np.asarray(Image.open(out / "grid.png")))
    expected = stylize(G, Domain.load(domain), photo, FAST, progress=False)
    assert np.array_equal(strip[2:34, 2 + 2 * 34:34 + 2 * 34], np.asarray(images.to_pil(expected.adapted)))
    assert np.array_equal(strip[2:34, 2 + 3 * 34:34 + 3 * 34], np.asarray(images.to_pil(expected.mixed)))
    code, _, err = run_cli(capsys, "stylize", str(photo), "--domain", str(domain), "--out",
                           str(tmp_path / "nomix"), "--no-mix", "--generator", GEN, *FAST_CLI)
    assert code == 0, err
    assert Image.open(tmp_path / "nomix" / "photo-stylized.png").size[0] == 3 * 34 + 2


@pytest.mark.parametrize("case,message", [
    ("empty", "0 bytes"),
    ("directory", "holds no photos"),
    ("corrupt", "photo.png"),
    ("huge", "decompression-bomb"),
    ("missing", "does not exist"),
    ("out-is-file", "is a file"),
    ("fit", "--fit"),
    ("align-offline", "--no-align"),
])
def test_hdn_invert_bad_input_is_one_line(tmp_path: Path, capsys, monkeypatch, case: str, message: str) -> None:
    photo = tmp_path / "photo.png"
    out = tmp_path / "out"
    extra: list[str] = []
    if case == "empty":
        photo.write_bytes(b"")
    elif case == "directory":
        photo.mkdir()
    elif case == "corrupt":
        photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    elif case == "huge":
        write_photo(photo)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    elif case == "out-is-file":
        write_photo(photo)
        out.write_text("x")
    elif case == "fit":
        write_photo(photo)
        extra = ["--fit", "stretch"]
    elif case == "align-offline":   # the landmark model cannot be downloaded
        from test_alignment import landmark_urls
        from test_download import closed_url

        write_photo(photo)
        landmark_urls(monkeypatch, closed_url())
        extra = ["--align"]
    code, _, err = run_cli(capsys, "invert", str(photo), "--generator", GEN, "--out", str(out), *FAST_CLI, *extra)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert case == "out-is-file" or not out.exists()


@pytest.mark.parametrize("case,message", [
    ("mix-without-reference", "no reference latent"),
    ("wrong-generator", "numbers) where the generator has"),
    ("missing-domain", "does not exist"),
    ("not-a-domain", "is a text file; expected a domain file"),
    ("unloadable-generator", "pass --generator"),
    ("corrupt-photo", "photo.png"),
])
def test_hdn_stylize_bad_input_is_one_line(tmp_path: Path, capsys, G, case: str, message: str) -> None:
    photo = write_photo(tmp_path / "photo.png")
    domain = write_domain(tmp_path / "d.safetensors", G, with_reference=case != "mix-without-reference")
    extra: list[str] = []
    if case == "mix-without-reference":
        extra = ["--mix"]
    elif case == "wrong-generator":
        extra = ["--generator", "random:64:channel_max=16:n_mlp=2"]
    elif case == "missing-domain":
        domain = tmp_path / "none.safetensors"
    elif case == "not-a-domain":
        domain.write_bytes(b"not safetensors")
    elif case == "unloadable-generator":
        dom = Domain.load(domain)
        dom.generator["name"] = "stylegan2-gone.pt"
        dom.save(domain)
    elif case == "corrupt-photo":
        photo.write_bytes(b"\xff\xd8\xff" + b"\x00" * 30)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "stylize", "--domain", str(domain), "--image", str(photo), "--out", str(out),
                           *FAST_CLI, *extra)
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not out.exists()
