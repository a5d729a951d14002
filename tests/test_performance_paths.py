"""Every fast path agrees with the straightforward reference: FIR ops, the fused modulated conv and
activation (values and gradients, gradcheck), style/demodulation reuse, channels-last, block
recomputation, micro-batches with the same gradient, the out-of-memory fallback, bf16 autocast."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from hyperdomainnet import load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.clip import ClipEnsemble
from hyperdomainnet.errors import HDNError
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.stylegan2 import Generator
from hyperdomainnet.stylegan2.ops import (fir_adjoint, make_fir_kernel, modulated_activation, scaled_conv,
                                          upfirdn2d, upfirdn2d_reference)
from hyperdomainnet.training.config import TextAdaptConfig
from hyperdomainnet.training.memory import AdaptiveMicroBatch, MicroBatched, micro_slices
from hyperdomainnet.clip.attention import PackedSelfAttention, prepare_clip
from hyperdomainnet.device import prepare_generator
from hyperdomainnet.training.sampling import sample_noise, sample_ws_per_call
from hyperdomainnet.training.steps import apply_update, load_step_state, loss_scaler, step_state
from hyperdomainnet.training.text import TextTrainer

from conftest import perturb

GEN = "random:32:channel_max=16:n_mlp=2"
CL = torch.channels_last


@pytest.fixture(scope="module")
def clip() -> ClipEnsemble:
    return ClipEnsemble.from_spec("random:tiny")


def seeded(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ws_of(G: Generator, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return G.ws(seeded(batch, G.style_dim, seed=seed), z2=seeded(batch, G.style_dim, seed=seed + 1), crossover=3)


def domain_grad(G: Generator, ws: torch.Tensor, noise: list, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and ∂(Σ sin(image))/∂δ for a per-sample δ."""
    delta = (0.3 * seeded(ws.shape[0], G.domain_size, seed=5)).requires_grad_()
    image = G.synthesis(ws, domain=delta, noise=noise, **kwargs)
    image.float().sin().sum().backward()
    return image.detach(), delta.grad


# ----- FIR ------------------------------------------------------------------------------------
@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (1, 1, (2, 1)), (1, 1, (-1, 2)), (2, 1, (2, 1)),
                                         (2, 1, (1, 1)), (2, 1, (4, 0)), (1, 2, (1, 1)), (2, 2, (2, 1))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upfirdn2d_matches_the_research_code_op(up: int, down: int, pad: tuple[int, int], channels_last: bool) -> None:
    kernel = make_fir_kernel([1, 2, 5, 3])  # asymmetric: catches a missing flip
    x = seeded(2, 3, 9, 9)
    fast_in = x.contiguous(memory_format=CL) if channels_last else x.clone()
    fast_in.requires_grad_()
    ref_in = x.clone().requires_grad_()
    fast = upfirdn2d(fast_in, kernel, up=up, down=down, pad=pad)
    ref = upfirdn2d_reference(ref_in, kernel, up=up, down=down, pad=pad)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    g = seeded(*ref.shape, seed=1)
    fast.backward(g)
    ref.backward(g)
    torch.testing.assert_close(fast_in.grad, ref_in.grad, atol=1e-6, rtol=1e-5)


def test_fir_adjoint_is_the_transpose() -> None:
    kernel = make_fir_kernel([1, 2, 5, 3])
    x, pad = seeded(2, 3, 9, 9, dtype=torch.float64), (1, 2)
    y = upfirdn2d(x, kernel.double(), pad=pad)
    g = seeded(*y.shape, seed=1, dtype=torch.float64)
    assert torch.allclose((y * g).sum(), (x * fir_adjoint(g, kernel.double(), pad)).sum())


# ----- fused autograd functions (gradcheck in float64) ------------------------------------------
@pytest.mark.parametrize("transposed", [False, True])
def test_scaled_conv_matches_composition_and_gradcheck(transposed: bool) -> None:
    d = torch.float64
    x = seeded(2, 3, 5, 5, dtype=d).requires_grad_()
    c = seeded(2, 3, seed=1, dtype=d).requires_grad_()
    w = seeded(4, 3, 3, 3, seed=2, dtype=d).requires_grad_()
    fir = (make_fir_kernel([1, 3, 3, 1]) * 4).double() if transposed else None
    args = (transposed, 1, fir, (1, 1))
    xc = x * c[:, :, None, None]
    if transposed:
        expected = upfirdn2d_reference(F.conv_transpose2d(xc, w.transpose(0, 1), stride=2), fir, pad=(1, 1))
    else:
        expected = F.conv2d(xc, w, padding=1)
    torch.testing.assert_close(scaled_conv(x, c, w, *args), expected)
    assert torch.autograd.gradcheck(lambda x, c, w: scaled_conv(x, c, w, *args), (x, c, w))
    shared = seeded(1, 3, seed=3, dtype=d).requires_grad_()  # one scale for the batch
    assert torch.autograd.gradcheck(lambda x, c: scaled_conv(x, c, w.detach(), *args), (x, shared))


@pytest.mark.parametrize("clamp", [None, 0.6])
def test_modulated_activation_matches_composition_and_gradcheck(clamp: float | None) -> None:
    d = torch.float64
    z = seeded(2, 3, 4, 4, dtype=d).requires_grad_()
    dm = (seeded(2, 3, seed=1, dtype=d).abs() + 0.5).requires_grad_()
    e = seeded(2, 1, 4, 4, seed=2, dtype=d).requires_grad_()
    b = seeded(3, seed=3, dtype=d).requires_grad_()
    u = z * dm[:, :, None, None] + e + b[None, :, None, None]
    expected = F.leaky_relu(u, 0.2)
    expected = expected if clamp is None else expected.clamp(-clamp, clamp)
    torch.testing.assert_close(modulated_activation(z, dm, e, b, clamp=clamp), expected)
    assert torch.autograd.gradcheck(lambda *a: modulated_activation(*a, clamp=clamp), (z, dm, e, b))
    shared_e = seeded(1, 1, 4, 4, seed=4, dtype=d).requires_grad_()
    assert torch.autograd.gradcheck(lambda z, e: modulated_activation(z, dm.detach(), e), (z, shared_e))


# ----- generator: reference vs fast in every configuration ----------------------------------------
@pytest.mark.parametrize("placement", ["after_demod", "before_demod"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_fast_synthesis_and_domain_gradient_match_reference(tiny_G: Generator, placement: str, channels_last: bool,
                                                            checkpoint: bool) -> None:
    ws = ws_of(tiny_G)
    noise = tiny_G.make_noise("random", 3, torch.device("cpu"), torch.Generator().manual_seed(2))
    ref_img, ref_grad = domain_grad(tiny_G, ws, noise, placement=placement, impl="reference")
    tiny_G.channels_last = channels_last
    img, grad = domain_grad(tiny_G, ws, noise, placement=placement, checkpoint=checkpoint)
    assert img.is_contiguous(memory_format=CL) == channels_last
    torch.testing.assert_close(img, ref_img, atol=1e-5, rtol=1e-4)
    # float32 rounding of either path is ~1e-6 of the largest gradient entry (both equal to 1e-12 in float64)
    torch.testing.assert_close(grad, ref_grad, atol=2e-6 * float(ref_grad.abs().max()), rtol=1e-4)


def test_full_gradients_match_reference_with_clamp() -> None:
    """Every frozen part trainable (full fine-tuning, inversion): weights, styles, biases, noise
    strengths and the codes get the reference gradients; conv_clamp exercises the clamp mask."""
    G = perturb(Generator(32, n_mlp=2, channel_max=16, conv_clamp=0.7)).requires_grad_(True)
    ws = ws_of(G).detach().requires_grad_()
    noise = G.make_noise("random", 3, torch.device("cpu"), torch.Generator().manual_seed(2))
    grads = []
    for impl, channels_last in (("reference", False), ("fast", False), ("fast", True)):
        G.channels_last = channels_last
        G.zero_grad(set_to_none=True)
        ws.grad = None
        G.synthesis(ws, noise=noise, impl=impl).sin().sum().backward()
        grads.append({"ws": ws.grad, **{n: p.grad for n, p in G.named_parameters() if p.grad is not None}})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for fast in grads[1:]:
        for name in grads[0]:
            torch.testing.assert_close(fast[name], grads[0][name], atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("kind", ["cout_mult", "aff_cout", "style_offset"])
def test_parameterizations_channels_last_match_reference(tiny_G: Generator, kind: str) -> None:
    P = build_parameterization(kind, tiny_G)
    with torch.no_grad():
        for name, p in P.named_parameters():  # β adds to every weight: keep it small
            p.add_((0.005 if name.endswith("beta") else 0.05) * seeded(*p.shape, seed=p.numel()))
    ws = ws_of(tiny_G)
    ref = P.synthesize(tiny_G, ws, impl="reference")
    tiny_G.channels_last = True
    torch.testing.assert_close(P.synthesize(tiny_G, ws), ref, atol=1e-5, rtol=1e-4)


# ----- style / demodulation reuse -------------------------------------------------------------
def test_style_cache_reuse_is_exact(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G)
    delta = 0.3 * seeded(tiny_G.domain_size, seed=4)
    cache = tiny_G.style_cache(ws)
    for kwargs in ({}, {"domain": delta}, {"domain": delta, "placement": "before_demod"},
                   {"style_offset": delta}):
        assert torch.equal(tiny_G.synthesis(ws, cache=cache, **kwargs), tiny_G.synthesis(ws, **kwargs))
    calls = []
    hook = tiny_G.conv1.conv.modulation.register_forward_hook(lambda *a: calls.append(1))
    tiny_G.synthesis(ws, cache=cache)
    tiny_G.synthesis(ws, domain=delta, cache=cache)
    assert not calls  # G_A and G_B of a step compute no style twice
    tiny_G.synthesis(ws.clone(), cache=cache)  # another tensor: recomputed
    assert calls
    hook.remove()
    other = perturb(copy.deepcopy(tiny_G), seed=9)
    assert torch.equal(other.synthesis(ws, cache=cache), other.synthesis(ws))  # another generator's cache: ignored
    part = cache.narrow(1, 2)
    torch.testing.assert_close(tiny_G.synthesis(part.ws, cache=part), tiny_G.synthesis(ws)[1:], atol=1e-6, rtol=1e-5)


def test_cache_built_without_autograd_is_not_used_with_it(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G).detach().requires_grad_()
    with torch.no_grad():
        cache = tiny_G.style_cache(ws)
    tiny_G.synthesis(ws, cache=cache).sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_frozen_weight_cache_follows_weight_changes(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G)
    before = tiny_G.synthesis(ws)
    with torch.no_grad():  # not a uniform scale, which demodulation undoes
        tiny_G.convs[0].conv.weight.add_(seeded(*tiny_G.convs[0].conv.weight.shape))
    after = tiny_G.synthesis(ws)
    assert not torch.allclose(before, after, atol=1e-4)
    torch.testing.assert_close(after, tiny_G.synthesis(ws, impl="reference"), atol=1e-5, rtol=1e-4)


# ----- CLIP attention ---------------------------------------------------------------------------
def test_packed_self_attention_matches_torch() -> None:
    images = seeded(3, 3, 40, 40).clamp(-1, 1)
    grads = []
    for packed in (False, True):
        ensemble = ClipEnsemble.from_spec("random:tiny")
        if packed:
            prepare_clip(ensemble)
        encoder = ensemble.members[0][0]
        x = images.clone().requires_grad_()
        out = encoder.encode_images(x)
        out.sin().sum().backward()
        grads.append((out.detach(), x.grad))
    assert any(type(m) is PackedSelfAttention for m in encoder.model.visual.modules())
    assert not any(type(m) is PackedSelfAttention for m in encoder.model.transformer.modules())  # causal text
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-7, rtol=1e-5)
    attn = next(m for m in encoder.model.visual.modules() if type(m) is PackedSelfAttention)
    tokens, mask = seeded(2, 5, attn.embed_dim, seed=3), seeded(5, 5, seed=4)
    reference = torch.nn.MultiheadAttention.forward
    for kwargs in ({"need_weights": True}, {"need_weights": False, "attn_mask": mask}):  # the generic path
        got, expected = attn(tokens, tokens, tokens, **kwargs), reference(attn, tokens, tokens, tokens, **kwargs)
        torch.testing.assert_close(got[0], expected[0])


# ----- bf16 autocast --------------------------------------------------------------------------
def test_bf16_autocast_close_to_fp32_reference(tiny_G: Generator) -> None:
    ws = ws_of(tiny_G)
    noise = tiny_G.make_noise("random", 3, torch.device("cpu"), torch.Generator().manual_seed(2))
    ref_img, ref_grad = domain_grad(tiny_G, ws, noise, impl="reference")
    tiny_G.channels_last = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img, grad = domain_grad(tiny_G, ws, noise)
    fp32_img, _ = domain_grad(tiny_G, ws, noise)
    assert not torch.allclose(img, fp32_img, atol=1e-4)  # the convolutions did run in bf16
    assert (img.float() - ref_img).abs().max() < 0.05 * ref_img.abs().max()
    # The generator's own rounding: the δ gradient of a smooth loss keeps cosine ≥ 0.999 (≈ 0.99994 here).
    assert F.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0) >= 0.999


# ----- fp16 loss scaling ----------------------------------------------------------------------
def test_fp16_loss_scaler_unscales_and_skips_overflowing_steps() -> None:
    assert loss_scaler(torch.device("cpu"), "fp16").is_enabled()
    assert not loss_scaler(torch.device("cpu"), "bf16").is_enabled()
    x = seeded(5)

    def stepped(scaler: torch.amp.GradScaler, overflow: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.zeros(5, requires_grad=True)
        optimizer = torch.optim.SGD([p], lr=0.5)
        grads = []

        def backward(total: torch.Tensor) -> None:  # ``overflow`` inf: gradients beyond range, a finite loss
            total.backward()
            p.grad.mul_(overflow)
            grads.append(p.grad.clone())

        apply_update(optimizer, {"loss": 1.0}, {"loss": (x * p).sum() + (p ** 2).sum()}, scaler, backward=backward)
        return p.detach(), grads[0]

    plain, plain_grad = stepped(loss_scaler(torch.device("cpu"), "fp32"))
    scaler = loss_scaler(torch.device("cpu"), "fp16")
    scaled, scaled_grad = stepped(scaler)
    torch.testing.assert_close(scaled_grad, plain_grad * scaler.get_scale())  # backward saw s·L
    torch.testing.assert_close(scaled, plain)  # the step used ∂L/∂p
    assert scaled.abs().sum() > 0
    before = scaler.get_scale()
    skipped, _ = stepped(scaler, overflow=float("inf"))
    assert torch.equal(skipped, torch.zeros(5)) and scaler.get_scale() == before / 2


def test_checkpoint_state_keeps_the_loss_scale() -> None:
    param = torch.nn.Linear(2, 1)
    optimizer, rng = torch.optim.Adam(param.parameters()), torch.Generator().manual_seed(3)
    scaler = loss_scaler(torch.device("cpu"), "fp16")
    scaler.scale(torch.ones(()))  # the scale tensor is made on first use
    scaler.update(new_scale=512.0)
    state = step_state(param, optimizer, scaler, rng)
    fresh = loss_scaler(torch.device("cpu"), "fp16")
    load_step_state(state, param, optimizer, fresh, torch.Generator())
    assert fresh.get_scale() == 512.0
    old_checkpoint = {k: v for k, v in state.items() if k != "scaler"}  # written before loss scaling
    load_step_state(old_checkpoint, param, optimizer, fresh, torch.Generator())
    assert fresh.get_scale() == 512.0
    with pytest.raises(HDNError, match="does not fit"):
        load_step_state(state, torch.nn.Linear(3, 1), optimizer, fresh, torch.Generator())


# ----- trainer: micro-batches, low memory, OOM fallback, options -----------------------------------
def trainer_grad(clip: ClipEnsemble, G: Generator | None = None, delta_scale: float = 0.05,
                 **changes) -> tuple[dict, torch.Tensor]:
    settings = dict(generator=GEN, clip="random:tiny", source="Photo", target="Sketch", batch=4, lr=0.05,
                    device="cpu", grid_samples=1, losses={"direction": 1.0, "indomain": 1.0, "global": 0.5,
                                                          "offsets_l2": 0.1}, mixing=1.0)
    settings.update(changes)
    trainer = TextTrainer(TextAdaptConfig(**settings), G=G or perturb(load_generator(GEN)), clip=clip)
    with torch.no_grad():  # away from δ = 0, where the direction loss's gradient is ill-conditioned
        for p in trainer.param.parameters():
            p.copy_(delta_scale * seeded(*p.shape, seed=p.numel()))
    report = trainer.train_step(0)
    return report, torch.cat([p.grad.flatten() for p in trainer.param.parameters()])


def close_gradients(grad: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to float32 noise (other batch shapes take other kernels): 1e-4 of the largest entry."""
    torch.testing.assert_close(grad, ref, atol=1e-4 * float(ref.abs().max()), rtol=1e-3)


@pytest.mark.parametrize("changes", [{"micro_batch": 1}, {"micro_batch": 3}, {"low_memory": True},
                                     {"channels_last": False}])
def test_trainer_step_options_give_the_same_gradient(clip: ClipEnsemble, changes: dict) -> None:
    ref_report, ref = trainer_grad(clip)
    report, grad = trainer_grad(clip, **changes)
    assert report.keys() == ref_report.keys()
    for k in report:
        assert report[k] == pytest.approx(ref_report[k], rel=1e-4, abs=1e-6), k
    close_gradients(grad, ref)


def test_trainer_bf16_step_close_to_fp32(clip: ClipEnsemble) -> None:
    # bf16 rounds every output to 8 mantissa bits; the image direction E(G_B) - E(G_A) must be large
    # against that (δ of order 1), else the tiny random CLIP's direction is mostly rounding noise
    ref_report, ref = trainer_grad(clip, delta_scale=1.0)
    report, grad = trainer_grad(clip, delta_scale=1.0, precision="bf16")
    assert report["total"] == pytest.approx(ref_report["total"], rel=0.05)
    assert F.cosine_similarity(grad, ref, dim=0) > 0.99


def test_trainer_gradient_matches_reference_step(clip: ClipEnsemble) -> None:
    """TextTrainer's fast step against the same step written the straightforward way."""
    G = perturb(load_generator(GEN))
    _, fast = trainer_grad(clip, G=G, losses={"direction": 1.0, "indomain": 1.0})
    trainer = TextTrainer(TextAdaptConfig(generator=GEN, clip="random:tiny", source="Photo", target="Sketch",
                                          batch=4, device="cpu", grid_samples=1, mixing=1.0,
                                          losses={"direction": 1.0, "indomain": 1.0}), G=G, clip=clip)
    delta = torch.cat([0.05 * seeded(p.numel(), seed=p.numel()) for p in trainer.param.parameters()]).requires_grad_()
    ws = sample_ws_per_call(G, 4, 1.0, trainer.rng, torch.device("cpu"), 1)[0]
    noise = sample_noise(G, "random", 4, trainer.rng, torch.device("cpu"))
    with torch.no_grad():
        src = G.synthesis(ws, noise=noise, impl="reference")
    trg = G.synthesis(ws, domain=delta, noise=noise, impl="reference")
    sum(trainer.target_terms(src, trg, range(1)).values()).backward()
    close_gradients(fast, delta.grad)


def test_out_of_memory_halves_the_micro_batch(clip: ClipEnsemble, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ref = trainer_grad(clip)
    G = perturb(load_generator(GEN))
    synthesis = G.synthesis

    def small_device(ws: torch.Tensor, **kwargs) -> torch.Tensor:
        if torch.is_grad_enabled() and ws.shape[0] > 1:
            raise torch.OutOfMemoryError("fake: out of memory")
        return synthesis(ws, **kwargs)

    monkeypatch.setattr(G, "synthesis", small_device)
    _, grad = trainer_grad(clip, G=G, low_memory=True)
    close_gradients(grad, ref)
    with pytest.raises(torch.OutOfMemoryError):
        trainer_grad(clip, G=G)  # without --low-memory the error is the user's to see


def test_micro_batched_gradient_of_a_pairwise_loss() -> None:
    weight = seeded(5, 3).requires_grad_()
    x = seeded(6, 5, seed=1)

    def loss(out: torch.Tensor) -> torch.Tensor:
        return (out @ out.t()).tanh().sum() + weight.square().sum()

    loss(x @ weight).backward()
    expected, weight.grad = weight.grad, None
    assert micro_slices(6, 4) == [slice(0, 4), slice(4, 6)] and micro_slices(6, None) == [slice(0, 6)]
    split = MicroBatched(lambda part: x[part] @ weight, micro_slices(6, 4))
    split.backward(loss(split.outputs()))
    torch.testing.assert_close(weight.grad, expected)


def test_adaptive_micro_batch_sizes() -> None:
    sizes = []

    def step(parts: list[slice]) -> int:
        sizes.append(parts[0].stop - parts[0].start)
        if sizes[-1] > 2:
            raise torch.OutOfMemoryError("fake")
        return len(parts)

    batcher = AdaptiveMicroBatch(6, adaptive=True)
    assert batcher.run(step) == 3 and sizes == [6, 3, 2] and batcher.size == 2
    with pytest.raises(torch.OutOfMemoryError):
        AdaptiveMicroBatch(6).run(step)


def test_prepare_generator_defaults(tiny_G: Generator) -> None:
    assert prepare_generator(tiny_G, torch.device("cpu")).channels_last
    assert not prepare_generator(tiny_G, torch.device("cpu"), channels_last=False).channels_last
    assert tiny_G.compile_options is None  # compile is opt-in (never in tests)


def test_cli_memory_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["adapt", "text", "--out", str(tmp_path / "run"), "--generator", GEN, "--clip", "random:tiny",
                 "--target", "Sketch", "--steps", "1", "--batch", "2", "--device", "cpu", "--grid-samples", "1",
                 "--low-memory", "--micro-batch", "1", "--clip-device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (stored["low_memory"], stored["micro_batch"], stored["clip_device"]) == (True, 1, "cpu")
    assert main(["adapt", "text", "--out", str(tmp_path / "bad"), "--generator", GEN, "--target", "Sketch",
                 "--micro-batch", "0"]) == 1
    assert "micro_batch" in capsys.readouterr().err
