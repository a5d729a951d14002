"""encoder4editing's single-pass e4e: released layout, checkpoint recognition and the forward pass."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import perturb
from encoder_standins import E4E_FFHQ_OPTS, write_e4e_standin, write_restyle_standin
from hyperdomainnet.encoders import (E4EEncoder, Encoder4EditingNet, EncoderArch, ReStyleEncoder, load_encoder,
                                     write_encoder_checkpoint)
from hyperdomainnet.errors import FileFormatError
from hyperdomainnet.loaders import load_generator
from test_download import hub  # noqa: F401 (a fixture)

TINY_G = "random:32:channel_max=16:n_mlp=2:style_dim=32"


@pytest.fixture
def G() -> torch.nn.Module:
    return perturb(load_generator(TINY_G))


def research_forward(net: Encoder4EditingNet, x: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
    """encoder4editing's inference written out: c1, c2, c3 after body units 6, 20 and 23; the FPN
    by bilinear (corners aligned) upsampling plus 1×1 lateral convs; w0 repeated over every entry and
    delta i added in place from the map of its level; then latent_avg added."""
    x = net.input_layer(x)
    for i, unit in enumerate(net.body):
        x = unit(x)
        if i == 6:
            c1 = x
        elif i == 20:
            c2 = x
        elif i == 23:
            c3 = x
    count = len(net.styles)
    w = net.styles[0](c3).repeat(count, 1, 1).permute(1, 0, 2).clone()
    features = c3
    for i in range(1, count):
        if i == 3:
            p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + \
                F.conv2d(c2, net.latlayer1.weight, net.latlayer1.bias)
            features = p2
        elif i == 7:
            features = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + \
                F.conv2d(c1, net.latlayer2.weight, net.latlayer2.bias)
        w[:, i] += net.styles[i](features)
    return w + latent_avg.repeat(x.shape[0], 1, 1)


def test_invert_matches_the_research_forward(tmp_path, G) -> None:
    path, net = write_e4e_standin(tmp_path / "e4e_ffhq_encode.pt", G)
    E = load_encoder(path)
    assert isinstance(E, E4EEncoder) and E.kind == "encoder4editing" and not E.iterative and E.faces
    assert E.generator.size == 32 and E.generator.identity["name"] == "e4e_ffhq_encode.pt"
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = research_forward(net, x, E.latent_avg)
    ws = E.invert(x)
    assert ws.shape == (2, G.n_latent, G.style_dim)
    torch.testing.assert_close(ws, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(E.invert(x[1:]), ws[1:], rtol=1e-4, atol=1e-4)   # one photo as if alone
    assert not torch.allclose(ws[0], ws[1])
    torch.testing.assert_close(E.invert(x, iterations=5), ws)                   # a single pass


def test_every_pyramid_level_and_head_counts(tmp_path, G) -> None:
    """Each of the three pyramid levels feeds its heads: changing a lateral conv moves exactly the
    entries from its level on, and head 0 moves them all."""
    path, _ = write_e4e_standin(tmp_path / "e4e.pt", G)
    E = load_encoder(path)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    before = E.invert(x)
    for module, first in ((E.net.latlayer2, 7), (E.net.latlayer1, 3), (E.net.styles[0].linear, 0)):
        with torch.no_grad():
            module.bias.add_(0.5)
        after = E.invert(x)
        changed = (after - before).abs().amax(-1)[0] > 1e-6
        assert changed.tolist() == [i >= first for i in range(G.n_latent)], (module, changed)
        before = after


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_net_is_the_module_network(channels_last) -> None:
    """The folded, head-batched network computes the eval-mode module's function."""
    from encoder_standins import randomize
    from hyperdomainnet.encoders.inference import E4EInferenceNet

    torch.manual_seed(4)
    net = randomize(Encoder4EditingNet(EncoderArch("encoder4editing", 9, input_nc=3, style_dim=24,
                                                   widths=(8, 8, 16, 16), stem_width=8))).eval()
    with torch.no_grad():
        for head in net.styles:
            head.linear.bias.normal_()
    x = torch.randn(2, 3, 256, 256)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, got = net(x), E4EInferenceNet(net)(x)
    assert got.shape == (2, 9, 24)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_released_key_names_and_shapes() -> None:
    """The full-size FFHQ network has encoder4editing's tensor names and shapes."""
    with torch.device("meta"):
        net = Encoder4EditingNet(EncoderArch("encoder4editing", 18, input_nc=3))
    state = net.state_dict()
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert state["latlayer1.weight"].shape == (512, 256, 1, 1) and state["latlayer1.bias"].shape == (512,)
    assert state["latlayer2.weight"].shape == (512, 128, 1, 1)
    assert state["body.23.res_layer.5.fc2.weight"].shape == (512, 32, 1, 1)
    convs = {i: sorted(int(k.split(".")[3]) for k in state if k.startswith(f"styles.{i}.convs.") and k.endswith("weight"))
             for i in range(18)}
    assert convs[0] == convs[2] == [0, 2, 4, 6]                 # 16×16 → 1: four stride-2 convs
    assert convs[3] == convs[6] == [0, 2, 4, 6, 8]              # 32×32 → 1
    assert convs[7] == convs[17] == [0, 2, 4, 6, 8, 10]         # 64×64 → 1
    assert state["styles.17.linear.weight"].shape == (512, 512) and "styles.18.linear.weight" not in state


def test_full_size_tensors_account_for_the_published_file_size() -> None:
    """encoder4editing's e4e_ffhq_encode.pt has 1,201,649,680 bytes. The tensors of the full-size
    network, an FFHQ 1024 decoder and the (18, 512) latent_avg make up all but ~0.03 % of them
    (the rest: the zip's per-tensor records, the pickled key names and opts); one head conv or
    lateral layer too many or too few would be megabytes off."""
    from hyperdomainnet.stylegan2.generator import Generator

    with torch.device("meta"):
        net = Encoder4EditingNet(EncoderArch("encoder4editing", 18, input_nc=3))
        decoder = Generator(1024)
    tensors = [*net.state_dict().values(), *(v for k, v in decoder.state_dict().items() if k != "latent_avg")]
    total = sum(t.numel() * t.element_size() for t in tensors) + 18 * 512 * 4
    overhead = 1_201_649_680 - total
    assert 0 < overhead < 500 * len(tensors), overhead


def test_zoo_standins_are_named_as_the_zoo_names_them(tmp_path, G) -> None:
    from encoder_standins import write_zoo_standins
    from hyperdomainnet import zoo

    files = write_zoo_standins(tmp_path / "mirror", G)
    assert {name: path.name for name, path in files.items()} == {name: zoo.resolve(name).file_name for name in files}
    kinds = {name: load_encoder(path).kind for name, path in files.items() if name != "dlib-landmarks-68"}
    assert kinds == {"restyle-psp-ffhq": "psp", "restyle-e4e-ffhq": "e4e", "e4e-ffhq": "encoder4editing"}


def test_load_encoder_recognises_each_network(tmp_path, G) -> None:
    e4e, _ = write_e4e_standin(tmp_path / "e4e.pt", G)
    psp, _ = write_restyle_standin(tmp_path / "psp.pt", G, "psp")
    restyle_e4e, _ = write_restyle_standin(tmp_path / "restyle-e4e.pt", G, "e4e")
    kinds = {p.name: (type(load_encoder(p)), load_encoder(p).kind) for p in (e4e, psp, restyle_e4e)}
    assert kinds == {"e4e.pt": (E4EEncoder, "encoder4editing"), "psp.pt": (ReStyleEncoder, "psp"),
                     "restyle-e4e.pt": (ReStyleEncoder, "e4e")}
    saved = torch.load(e4e, weights_only=True)
    assert set(saved) == {"state_dict", "opts", "latent_avg"} and saved["latent_avg"].shape == (G.n_latent, 32)
    assert saved["opts"]["encoder_type"] == "Encoder4Editing" and saved["opts"]["stylegan_size"] == 32
    assert {k.split(".")[0] for k in saved["state_dict"]} == {"encoder", "decoder"}


@pytest.mark.parametrize("change, message", [
    ("restyle-tensors", "reads 3"),                 # ReStyle's 6-channel network under e4e's name
    ("e4e-tensors", "reads 6"),                     # e4e's network under ReStyle's name
    ("no-lateral", "missing ['latlayer1.weight'"),
    ("size", "stylegan_size 1024"),
    ("pSp", "'GradualStyleEncoder' encoder"),       # pSp's own encoder: same keys, another forward
    ("unnamed", "opts name no encoder_type"),       # the keys alone cannot tell e4e from pSp
])
def test_wrong_network_is_one_line(tmp_path, G, change, message) -> None:
    path, _ = write_e4e_standin(tmp_path / "e4e.pt", G)
    ckpt = torch.load(path, weights_only=True)
    if change == "restyle-tensors":
        path, _ = write_restyle_standin(tmp_path / "r.pt", G)
        ckpt = torch.load(path, weights_only=True)
        ckpt["opts"] = {**E4E_FFHQ_OPTS, "stylegan_size": 32}
    elif change == "e4e-tensors":
        ckpt["opts"]["encoder_type"] = "ProgressiveBackboneEncoder"
    elif change == "no-lateral":
        del ckpt["state_dict"]["encoder.latlayer1.weight"]
    elif change == "size":
        ckpt["opts"]["stylegan_size"] = 1024
    elif change == "pSp":
        ckpt["opts"]["encoder_type"] = "GradualStyleEncoder"
    elif change == "unnamed":
        del ckpt["opts"]["encoder_type"]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(FileFormatError) as exc:
        load_encoder(tmp_path / "bad.pt")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_write_encoder_checkpoint_names_the_network(tmp_path, G) -> None:
    net = Encoder4EditingNet(EncoderArch("encoder4editing", G.n_latent, input_nc=3, style_dim=32,
                                         widths=(8, 8, 16, 16), stem_width=8))
    path = write_encoder_checkpoint(tmp_path / "e.pt", net, G, G.mean_latent())
    opts = torch.load(path, weights_only=True)["opts"]
    assert opts == {"encoder_type": "Encoder4Editing", "stylegan_size": 32, "start_from_latent_avg": True}
    assert not load_encoder(path).faces


def test_hdn_invert_and_stylize_accept_it(tmp_path, capsys, G, monkeypatch) -> None:
    from conftest import run_cli
    from hyperdomainnet.images import load_image
    from hyperdomainnet.latent import Latent
    from test_stylize import write_domain, write_photo

    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    path, _ = write_e4e_standin(tmp_path / "e4e_ffhq_encode.pt", G)
    photo = write_photo(tmp_path / "p.png", 0, (256, 256))
    cpu = ["--no-align", "--device", "cpu", "--no-progress"]
    code, stdout, err = run_cli(capsys, "invert", str(photo), "--encoder", str(path), "--out", str(tmp_path / "i"), *cpu)
    assert code == 0, err
    assert "by e4e_ffhq_encode.pt" in stdout
    written = Latent.load(tmp_path / "i" / "p-latent.safetensors")
    E = load_encoder(path)
    torch.testing.assert_close(written.latent, E.invert(load_image(photo, 256)), rtol=1e-4, atol=1e-4)
    assert (written.settings["encoder_kind"], written.settings["iterations"]) == ("encoder4editing", 1)
    domain = write_domain(tmp_path / "d.safetensors", E.generator, with_reference=False)
    code, stdout, err = run_cli(capsys, "stylize", str(photo), "--domain", str(domain), "--encoder", str(path),
                                "--out", str(tmp_path / "s"), *cpu)
    assert code == 0, err
    assert "by e4e_ffhq_encode.pt" in stdout and (tmp_path / "s" / "p-stylized.png").is_file()


def test_e4e_ffhq_by_name_downloads_from_its_pinned_hugging_face_copy(tmp_path, capsys, G, hub, monkeypatch) -> None:
    """``--encoder e4e-ffhq``: the zoo's own first URL (Hugging Face, pinned commit) served locally
    with a stand-in, verified (by the stand-in's hash), loaded as encoder4editing's network."""
    import hashlib

    from conftest import run_cli
    from hyperdomainnet import zoo
    from test_alignment import zoo_sources
    from test_stylize import write_photo

    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    path, _ = write_e4e_standin(tmp_path / "standin.pt", G)
    first = zoo.resolve("e4e-ffhq").urls[0]
    assert first.startswith("https://huggingface.co/wmpscc/StyleGene/resolve/")
    hub.add(first.removeprefix("https://huggingface.co"), path.read_bytes())
    zoo_sources(monkeypatch, "e4e-ffhq", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    photo = write_photo(tmp_path / "p.png", 0, (64, 64))
    code, stdout, err = run_cli(capsys, "invert", str(photo), "--encoder", "e4e", "--out", str(tmp_path / "o"),
                                "--no-align", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "by e4e-ffhq" in stdout and zoo.resolve("e4e-ffhq").path().is_file()
    assert hub.hits.count(f"GET {first.removeprefix('https://huggingface.co')}") == 1
