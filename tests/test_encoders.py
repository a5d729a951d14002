"""ReStyle encoders: released checkpoint layout, loading errors and the iterative inversion."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import perturb
from encoder_standins import randomize
from hyperdomainnet.encoders import EncoderArch, ReStyleNet, load_encoder, write_encoder_checkpoint
from hyperdomainnet.encoders.inference import InferenceNet
from hyperdomainnet.errors import FileFormatError
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from hyperdomainnet.loaders import load_generator

TINY_G = "random:32:channel_max=16:n_mlp=2:style_dim=32"


def tiny_encoder_file(tmp_path, kind: str = "psp", latent_shape: str = "wplus"):
    G = perturb(load_generator(TINY_G))
    torch.manual_seed(3)
    net = randomize(ReStyleNet(EncoderArch(kind, G.n_latent, style_dim=G.style_dim, widths=(8, 8, 16, 16),
                                           stem_width=8)))
    w_avg = G.mean_latent() + 0.1 * torch.randn(G.style_dim)
    latent_avg = w_avg[None].repeat(G.n_latent, 1) if latent_shape == "wplus" else w_avg
    return write_encoder_checkpoint(tmp_path / f"{kind}.pt", net, G, latent_avg), net, G, latent_avg


def direct_inversion(net, G, latent_avg, x, iterations):
    """The research loop written out: every iteration renders and pools its output."""
    codes = latent_avg.expand(G.n_latent, -1)[None].repeat(x.shape[0], 1, 1)
    y_hat = F.adaptive_avg_pool2d(G.synthesis(codes[:1], noise_mode="const"), (256, 256)).repeat(x.shape[0], 1, 1, 1)
    latent = None
    for _ in range(iterations):
        out = net(torch.cat([x, y_hat], dim=1))
        latent = out + (codes if latent is None else latent)
        y_hat = F.adaptive_avg_pool2d(G.synthesis(latent, noise_mode="const"), (256, 256))
    return latent


@pytest.mark.parametrize("kind", ["psp", "e4e"])
@pytest.mark.parametrize("iterations", [1, 5])
def test_invert_matches_direct_formulation(tmp_path, kind, iterations):
    path, net, G, latent_avg = tiny_encoder_file(tmp_path, kind)
    E = load_encoder(path)
    assert E.kind == kind and E.generator.size == 32
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = direct_inversion(net.eval(), G, latent_avg, x, iterations)
    ws = E.invert(x, iterations=iterations)
    assert ws.shape == (2, G.n_latent, G.style_dim)
    torch.testing.assert_close(ws, expected, rtol=1e-4, atol=1e-4)
    # each photo in a batch is inverted as if alone
    torch.testing.assert_close(E.invert(x[1:], iterations=iterations), ws[1:], rtol=1e-4, atol=1e-4)


def test_iterations_refine_and_photo_matters(tmp_path):
    path, *_ = tiny_encoder_file(tmp_path)
    E = load_encoder(path)
    x = torch.rand(2, 3, 128, 96) * 2 - 1          # resized to 256 first
    one, five = E.invert(x, 1), E.invert(x, 5)
    assert not torch.allclose(one, five)
    assert not torch.allclose(five[0], five[1])


def test_e4e_is_base_code_plus_deltas(tmp_path):
    _, net, *_ = tiny_encoder_file(tmp_path, "e4e")
    x = torch.randn(1, 6, 256, 256)
    with torch.no_grad():
        out = net.eval()(x)
        features = net.body(net.input_layer(x))
        heads = torch.stack([h(features) for h in net.styles], 1)
    torch.testing.assert_close(out[:, 0], heads[:, 0])
    torch.testing.assert_close(out[:, 1:], heads[:, :1] + heads[:, 1:])


@pytest.mark.parametrize("kind", ["psp", "e4e"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_net_is_the_module_network(kind, channels_last):
    """Folded BatchNorms, view shortcuts, addcmul squeeze-excitation and im2col heads compute the
    eval-mode module's function (both shortcut kinds: widths 8→8 max-pool, 8→16 conv)."""
    torch.manual_seed(5)
    net = randomize(ReStyleNet(EncoderArch(kind, 5, style_dim=24, widths=(8, 8, 16, 16), stem_width=8))).eval()
    with torch.no_grad():
        for head in net.styles:
            head.linear.bias.normal_()
    x = torch.randn(2, 6, 256, 256)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = net(x)
        got = InferenceNet(net)(x)
    assert got.shape == (2, 5, 24)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    with pytest.raises(ValueError, match="too large for its heads"):
        InferenceNet(net)(torch.randn(1, 6, 512, 512))
    with pytest.raises(ValueError, match="eval"):
        InferenceNet(net.train())


def test_encoder_follows_weight_changes(tmp_path):
    """The encoder's folded network is rebuilt when the module's weights or statistics change."""
    path, *_ = tiny_encoder_file(tmp_path)
    E = load_encoder(path)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    before = E.invert(x, 2)
    with torch.no_grad():
        E.net.body[2].res_layer[4].running_mean.add_(0.5)   # a BatchNorm folded into its conv
        expected = direct_inversion(E.net, E.generator, E.latent_avg[0], x, 2)
    after = E.invert(x, 2)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)


def test_released_layout_key_names_and_shapes():
    """The full-size FFHQ encoder has the released checkpoints' tensor names and shapes."""
    with torch.device("meta"):
        net = ReStyleNet(EncoderArch("psp", 18))
    state = net.state_dict()
    assert state["input_layer.0.weight"].shape == (64, 6, 3, 3)
    assert state["input_layer.2.weight"].shape == (64,)
    assert sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")}) == list(range(24))
    assert "body.0.shortcut_layer.0.weight" not in state  # same width: a 1×1 max-pool shortcut
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert state["body.3.res_layer.3.weight"].shape == (128, 128, 3, 3)
    assert state["body.23.res_layer.5.fc1.weight"].shape == (32, 512, 1, 1)
    assert state["body.23.res_layer.5.fc2.weight"].shape == (512, 32, 1, 1)
    assert state["body.21.res_layer.4.num_batches_tracked"].shape == ()
    assert state["styles.17.convs.6.weight"].shape == (512, 512, 3, 3)
    assert state["styles.17.linear.weight"].shape == (512, 512)
    assert not any(k.startswith("styles.18.") for k in state)
    assert sum(v.numel() for k, v in state.items() if "num_batches" not in k and "running" not in k) > 200e6


def test_start_code_of_one_w(tmp_path):
    path, net, G, latent_avg = tiny_encoder_file(tmp_path, latent_shape="w")
    E = load_encoder(path)
    torch.testing.assert_close(E.latent_avg, latent_avg[None].repeat(G.n_latent, 1))


def test_loading_errors(tmp_path):
    G = load_generator(TINY_G)
    generator_file = write_rosinality(G, tmp_path / "g.pt")
    with pytest.raises(FileFormatError, match="generator checkpoint, not an encoder"):
        load_encoder(generator_file)
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FileFormatError, match="not a readable"):
        load_encoder(tmp_path / "junk.pt")
    torch.save({"state_dict": {}, "opts": {"encoder_type": "GradualStyleEncoder"}, "latent_avg": torch.zeros(3)},
               tmp_path / "fpn.pt")
    with pytest.raises(FileFormatError, match="'GradualStyleEncoder' encoder"):
        load_encoder(tmp_path / "fpn.pt")
    path, *_ = tiny_encoder_file(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["output_size"] = 1024
    torch.save(ckpt, tmp_path / "wrong-size.pt")
    with pytest.raises(FileFormatError, match="output_size 1024"):
        load_encoder(tmp_path / "wrong-size.pt")
    ckpt["opts"]["output_size"] = 32
    del ckpt["state_dict"]["encoder.styles.0.linear.bias"]
    torch.save(ckpt, tmp_path / "missing.pt")
    with pytest.raises(FileFormatError, match="missing"):
        load_encoder(tmp_path / "missing.pt")
    with pytest.raises(FileFormatError, match="neither a file nor a zoo name"):
        load_encoder("no-such-encoder")
    with pytest.raises(FileFormatError, match="not an encoder"):
        load_encoder("ffhq")
