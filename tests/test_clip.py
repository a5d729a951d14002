"""CLIP wrapper: random:tiny offline, differentiable preprocessing, templates, spec errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms

from hyperdomainnet.clip import (
    IMAGENET_TEMPLATES,
    ClipEncoder,
    ClipEnsemble,
    clip_preprocess,
    load_clip,
    parse_ensemble_spec,
)
from hyperdomainnet.errors import HDNError


@pytest.fixture(scope="module")
def tiny() -> ClipEncoder:
    return load_clip("random:tiny")


def test_templates_are_79_distinct_with_one_slot() -> None:
    assert isinstance(IMAGENET_TEMPLATES, tuple)
    assert len(IMAGENET_TEMPLATES) == 79 == len(set(IMAGENET_TEMPLATES))
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert IMAGENET_TEMPLATES[0].format("cat") == "a bad photo of a cat."


def test_tiny_builds_frozen_and_deterministic(tiny: ClipEncoder) -> None:
    assert (tiny.name, tiny.embed_dim, tiny.input_size) == ("random:tiny", 32, 32)
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    state = torch.random.get_rng_state()
    again = load_clip("random:tiny")
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in tiny.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key


@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (1, 3, 64, 64), (2, 3, 40, 56), (1, 3, 72, 20), (1, 3, 16, 16)]
)
def test_encode_images_differentiable(tiny: ClipEncoder, shape: tuple[int, ...]) -> None:
    images = (torch.rand(shape) * 2 - 1).requires_grad_(True)
    emb = tiny.encode_images(images)
    assert emb.shape == (shape[0], 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(shape[0]), atol=1e-5)
    emb.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_encode_images_unnormalised(tiny: ClipEncoder) -> None:
    images = torch.rand(3, 3, 48, 48) * 2 - 1
    raw = tiny.encode_images(images, normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3))
    assert torch.allclose(F.normalize(raw, dim=-1), tiny.encode_images(images), atol=1e-6)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (50, 70), (90, 45), (20, 24), (1024, 1024)])
def test_preprocess_matches_torchvision(hw: tuple[int, int], antialias: bool) -> None:
    size, mean, std = 28, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    images = torch.rand(2, 3, *hw, dtype=torch.float64) * 2 - 1
    reference = transforms.Compose([
        transforms.Normalize(mean=[-1.0] * 3, std=[2.0] * 3),
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=antialias),
        transforms.CenterCrop(size),
        transforms.Normalize(mean=mean, std=std),
    ])(images)
    ours = clip_preprocess(images, size, mean, std, antialias=antialias)
    assert ours.shape == (2, 3, size, size)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)


def test_encoder_preprocess_uses_its_size_and_stats(tiny: ClipEncoder) -> None:
    images = torch.rand(1, 3, 40, 56) * 2 - 1
    expected = clip_preprocess(images, tiny.input_size, tiny.mean, tiny.std)
    assert torch.equal(tiny.preprocess(images), expected)


def test_encode_text_normalised(tiny: ClipEncoder) -> None:
    emb = tiny.encode_text(["a photo", "a sketch", "a photo"])
    assert emb.shape == (3, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb[0], emb[2]) and not torch.allclose(emb[0], emb[1])


def test_template_embeddings_cached(tiny: ClipEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = tiny.encode_text

    def counting(texts, normalize=True):  # noqa: ANN001, ANN202
        calls.append(len(texts))
        return original(texts, normalize)

    monkeypatch.setattr(tiny, "encode_text", counting)
    first = tiny.template_embeddings("Golden Car")
    assert first.shape == (79, 32)
    assert torch.allclose(first.norm(dim=-1), torch.ones(79), atol=1e-5)
    assert torch.allclose(first[0], original(["a bad photo of a Golden Car."])[0], atol=1e-6)
    assert tiny.template_embeddings("Golden Car") is first
    assert calls == [79]
    tiny.template_embeddings("Car")
    assert calls == [79, 79]


def test_text_direction_is_mean_of_template_differences(tiny: ClipEncoder) -> None:
    direction = tiny.text_direction("Photo", "Sketch")
    expected = (tiny.template_embeddings("Sketch") - tiny.template_embeddings("Photo")).mean(0)
    assert direction.shape == (32,)
    assert torch.allclose(direction, expected)


def test_file_spec_loads_saved_weights(tiny: ClipEncoder, tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    shifted = {k: v + 0.5 for k, v in tiny.model.state_dict().items()}
    torch.save(shifted, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in shifted.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        loaded = load_clip(f"file:tiny:{tmp_path / name}")
        assert torch.equal(loaded.model.visual.conv1.weight, shifted["visual.conv1.weight"])
        assert not any(p.requires_grad for p in loaded.model.parameters())


@pytest.mark.parametrize("spec", [
    "nope", "ViT-B/99", "random:", "random:NoSuchArch", "open_clip:ViT-B-32:no_such_tag",
    "open_clip:NoSuchArch:openai", "open_clip:tiny:openai", "file:ViT-B-32:/no/such/file.pt",
    "file:tiny",
])
def test_bad_spec_is_one_line_hdnerror(spec: str) -> None:
    with pytest.raises(HDNError) as info:
        load_clip(spec)
    assert "\n" not in str(info.value) and spec.split(":")[0] in str(info.value)


def test_unreadable_weights_file_is_hdnerror(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    with pytest.raises(HDNError, match="state dict"):
        load_clip(f"file:tiny:{bad}")


def test_missing_download_is_hdnerror(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("Failed to download weights for tag 'openai': no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(HDNError, match="could not be downloaded.*file:<arch>:<path>"):
        load_clip("ViT-B/32")


def test_parse_ensemble_spec() -> None:
    assert parse_ensemble_spec("ViT-B/32:1.0,ViT-B/16:1.0") == [("ViT-B/32", 1.0), ("ViT-B/16", 1.0)]
    assert parse_ensemble_spec("random:tiny") == [("random:tiny", 1.0)]
    assert parse_ensemble_spec(" open_clip:ViT-B-32:laion2b_s34b_b79k:0.5 , ViT-B/16 ") == [
        ("open_clip:ViT-B-32:laion2b_s34b_b79k", 0.5), ("ViT-B/16", 1.0)]
    for bad in ["", "ViT-B/32:-1", "ViT-B/32:nan", "random:tiny,random:tiny:2"]:
        with pytest.raises(HDNError):
            parse_ensemble_spec(bad)


def test_ensemble_from_spec() -> None:
    ensemble = ClipEnsemble.from_spec("random:tiny:0.5")
    assert len(ensemble) == 1 and ensemble.names == ["random:tiny"]
    (encoder, weight), = list(ensemble)
    assert weight == 0.5 and ensemble["random:tiny"] is encoder
    assert ensemble.spec == "random:tiny:0.5"
    assert parse_ensemble_spec(ensemble.spec) == [("random:tiny", 0.5)]


def test_released_text_tower_frees_its_weights_and_keeps_cached_prompts() -> None:
    encoder = load_clip("random:tiny")
    cached = encoder.template_embeddings("Sketch").clone()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    before_image = encoder.encode_images(image)
    params = sum(p.numel() for p in encoder.model.parameters())
    encoder.release_text_tower()
    text_params = params - sum(p.numel() for p in encoder.model.parameters())
    assert text_params >= 49408 * 64  # at least the token embedding table is gone
    assert not encoder.has_text_tower and encoder.model.transformer is None
    assert torch.equal(encoder.template_embeddings("Sketch"), cached)
    assert torch.equal(encoder.encode_images(image), before_image)
    with pytest.raises(RuntimeError, match="text tower was released"):
        encoder.template_embeddings("Zombie")


def test_trainers_release_only_a_clip_they_loaded_themselves() -> None:
    from hyperdomainnet import load_generator
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.text import TextTrainer

    cfg = TextAdaptConfig(generator="random:32:channel_max=16:n_mlp=2", clip="random:tiny", target="Sketch",
                          batch=2, steps=1, device="cpu", grid_samples=2)
    shared = ClipEnsemble.from_spec("random:tiny")
    TextTrainer(cfg, G=load_generator(cfg.generator), clip=shared)
    assert all(encoder.has_text_tower for encoder, _ in shared)
    own = TextTrainer(cfg, G=load_generator(cfg.generator))
    assert not any(encoder.has_text_tower for encoder, _ in own.clip)
    own.train_step(0)  # the step needs only the prompts' cached embeddings


def test_training_clip_frees_text_towers_only_of_its_own_ensemble_when_given_the_prompts() -> None:
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.steps import training_clip

    cfg = TextAdaptConfig(generator="random:32:channel_max=16:n_mlp=2", clip="random:tiny", target="Sketch", device="cpu")
    own = training_clip(cfg, None, torch.device("cpu"), prompts=())  # image runs
    assert not any(encoder.has_text_tower for encoder, _ in own)
    kept = training_clip(cfg, None, torch.device("cpu"))  # prompts=None: the hypernetwork trainers keep them
    assert all(encoder.has_text_tower for encoder, _ in kept)
    shared = ClipEnsemble.from_spec("random:tiny")
    training_clip(cfg, shared, torch.device("cpu"), prompts=("Sketch",))
    assert all(encoder.has_text_tower for encoder, _ in shared) and "Sketch" in shared[shared.names[0]]._template_cache
