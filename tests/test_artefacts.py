"""One loading convention: ``X.load(name_or_path)`` / ``x.save(path)`` for latents and encoders, and the
package-root exports."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperdomainnet import fileformat
from hyperdomainnet.errors import FileFormatError
from hyperdomainnet.hashing import file_identity_sha256
from hyperdomainnet.latent import FORMAT, FORMAT_VERSION, Latent
from hyperdomainnet.loaders import load_generator
from test_encoders import TINY_G, tiny_encoder_file

SETTINGS = {"method": "restyle", "encoder": "psp.pt", "iterations": 3, "align": None}


def make_latent(seed: int = 0) -> Latent:
    G = load_generator(TINY_G)
    code = torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(seed))
    return Latent(code, "photo.png", "ab" * 32, G.identity, dict(SETTINGS), {"mse": 0.25, "lpips": 0.5})


def test_latent_round_trip(tmp_path: Path) -> None:
    original = make_latent()
    assert original.save(tmp_path / "a.safetensors") == tmp_path / "a.safetensors"
    back = Latent.load(tmp_path / "a.safetensors")
    assert torch.equal(back.latent, original.latent)
    assert (back.image, back.image_sha256, back.generator, back.settings, back.losses) == \
        (original.image, original.image_sha256, original.generator, original.settings, original.losses)
    meta = fileformat.read_metadata(tmp_path / "a.safetensors")
    assert meta is not None and (meta["format"], meta["version"]) == (FORMAT, FORMAT_VERSION)


def test_latent_reads_files_of_the_existing_layout(tmp_path: Path) -> None:
    """Files ``hdn invert`` wrote before ``Latent`` (and the inversion cache's files) load unchanged."""
    code = make_latent(1).latent
    written = fileformat.save(tmp_path / "old.safetensors", {"latent": code},
                              {"image": "x.jpg", "image_sha256": "cd" * 32, "generator": None,
                               "settings": {"method": "ii2s", "steps": 3}, "losses": {"total": 1.5}},
                              file_format="hyperdomainnet.latent", version=1)
    old = Latent.load(written)
    assert torch.equal(old.latent, code) and old.generator is None and old.losses == {"total": 1.5}
    cache = fileformat.save(tmp_path / "cache.safetensors", {"latent": code, "losses": torch.ones(3, 4)},
                            {"image": "/photos/x.jpg", "image_sha256": "cd" * 32, "generator": None,
                             "settings": {"steps": 3}, "loss_keys": ["total", "mse", "lpips", "p_norm"]},
                            file_format="hyperdomainnet.latent", version=1)
    cached = Latent.load(cache)
    assert torch.equal(cached.latent, code) and cached.losses == {} and cached.settings == {"steps": 3}


def one_line_error(path: Path) -> str:
    with pytest.raises(FileFormatError) as info:
        Latent.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_corrupt_latent_files_are_one_line_errors(tmp_path: Path) -> None:
    good = make_latent().save(tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    assert "truncated" in one_line_error(tmp_path / "truncated.safetensors")
    fileformat.save(tmp_path / "flat.safetensors", {"latent": torch.zeros(4, 32)},
                    {"image": "a", "image_sha256": "b", "generator": None, "settings": {}},
                    file_format=FORMAT, version=FORMAT_VERSION)
    assert "(B, n_latent, D), found shape (4, 32)" in one_line_error(tmp_path / "flat.safetensors")
    fileformat.save(tmp_path / "partial.safetensors", {"latent": torch.zeros(1, 4, 32)}, {"image": "a"},
                    file_format=FORMAT, version=FORMAT_VERSION)
    assert "lacks image_sha256, generator, settings" in one_line_error(tmp_path / "partial.safetensors")
    fileformat.save(tmp_path / "typed.safetensors", {"latent": torch.zeros(1, 4, 32)},
                    {"image": "a", "image_sha256": "b", "generator": "ffhq", "settings": {}},
                    file_format=FORMAT, version=FORMAT_VERSION)
    assert "corrupt metadata" in one_line_error(tmp_path / "typed.safetensors")
    fileformat.save(tmp_path / "domain.safetensors", {"vector": torch.zeros(3)}, {},
                    file_format="hyperdomainnet.domain", version=1)
    assert "not a latent file" in one_line_error(tmp_path / "domain.safetensors")
    assert "does not exist" in one_line_error(tmp_path / "missing.safetensors")


def test_restyle_encoder_load_from_a_file(tmp_path: Path) -> None:
    from hyperdomainnet.encoders import ReStyleEncoder, load_encoder

    path, _, _, latent_avg = tiny_encoder_file(tmp_path)
    E = load_encoder(path)
    assert isinstance(E, ReStyleEncoder) and E.kind == "psp" and E.name == "psp.pt"
    assert E.generator.identity["name"] == "psp.pt"
    assert E.generator.identity["sha256"] == file_identity_sha256(path)
    torch.testing.assert_close(E.latent_avg, latent_avg)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(E.invert(x, iterations=2), load_encoder(path).invert(x, iterations=2))
    assert not hasattr(E, "save")  # released checkpoints are read-only artefacts
    with pytest.raises(FileFormatError, match="neither a file nor a zoo name"):
        load_encoder(tmp_path / "no-such-encoder")


def test_package_root_exports() -> None:
    import hyperdomainnet
    from hyperdomainnet import Domain, HyperDomainNet, ReStyleEncoder, load_domain, load_encoder
    from hyperdomainnet import Latent as RootLatent
    from hyperdomainnet import load_generator as root_load_generator
    from hyperdomainnet.domain.files import Domain as FileDomain
    from hyperdomainnet.encoders import ReStyleEncoder as EncoderClass
    from hyperdomainnet.hypernet.model import HyperDomainNet as ModelClass

    assert (RootLatent, ReStyleEncoder, Domain, HyperDomainNet) == (Latent, EncoderClass, FileDomain, ModelClass)
    assert root_load_generator is load_generator and callable(load_domain) and callable(load_encoder)
    for name in ("Latent", "ReStyleEncoder", "load_encoder", "Domain", "HyperDomainNet", "load_domain",
                 "load_generator"):
        assert name in hyperdomainnet.__all__
