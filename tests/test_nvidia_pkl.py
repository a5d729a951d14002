"""Safe reading of NVIDIA stylegan2-ada-pytorch ``.pkl`` generators (synthetic pickles, offline).

The pickles are built here with stand-in classes that reduce exactly like NVIDIA's persistent
networks: ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the module source,
class name and ``__dict__`` state. The fake NVIDIA packages live in ``sys.modules`` only while
pickling, so the reader must work without them; the embedded source would leave a marker file
if it were ever executed.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hyperdomainnet.errors import HDNError
from hyperdomainnet.stylegan2.formats.nvidia_pkl import NvidiaCheckpoint, read_nvidia_pickle
from hyperdomainnet.stylegan2.generator import Generator

ARCH = {"size": 16, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 1, "channel_max": 16,
        "lr_mlp": 0.05, "conv_clamp": 0.5}
FILTER = torch.tensor([[1.0, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]]) / 64
BUFFERS = ("w_avg", "noise_const", "resample_filter")


# ----- fake NVIDIA packages and persistent objects -----------------------------------------------

def _reconstruct_persistent_obj(meta: dict) -> Any:
    raise AssertionError("NVIDIA's reconstructor must never be called by the reader")


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``."""


class Network(dict):
    """Stand-in for the TensorFlow-era ``dnnlib.tflib.network.Network``."""


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
EasyDict.__module__ = "dnnlib.util"
Network.__module__ = "dnnlib.tflib.network"


class Net:
    """Pickles like an NVIDIA ``@persistent_class`` network, carrying ``module_src``."""

    def __init__(self, class_name: str, module_src: str, **attrs: Any) -> None:
        self.class_name, self.module_src = class_name, module_src
        self.state: dict[str, Any] = {
            "training": False, "_parameters": OrderedDict(), "_buffers": OrderedDict(),
            "_non_persistent_buffers_set": set(), "_modules": OrderedDict(), "_init_args": (),
            "_init_kwargs": EasyDict(), **attrs}

    def sub(self, dotted: str) -> Net:
        net = self
        for name in dotted.split("."):
            net = net.state["_modules"][name]
        return net

    def __reduce__(self) -> tuple:
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name,
                    state=self.state)
        return _reconstruct_persistent_obj, (meta,)


@contextlib.contextmanager
def fake_nvidia_packages() -> Iterator[None]:
    """``torch_utils.persistence`` and ``dnnlib.util`` in ``sys.modules`` only inside the block."""
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib",
             "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib.tflib.network"].Network = Network
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def write_pickle(path: Path, data: Any, protocol: int = 4) -> Path:
    with fake_nvidia_packages(), open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    assert "torch_utils.persistence" not in sys.modules
    return path


# ----- rosinality → NVIDIA layout (the inverse of the reader, for building test files) ----------

def to_nvidia_state_dict(sd: dict[str, torch.Tensor], arch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """rosinality ``g_ema`` keys (+ ``latent_avg``) → NVIDIA Generator keys."""
    nv = {"mapping.w_avg": sd["latent_avg"], "synthesis.b4.const": sd["input.input"][0]}
    for i in range(arch["n_mlp"]):
        nv.update({f"mapping.fc{i}.weight": sd[f"style.{i + 1}.weight"],
                   f"mapping.fc{i}.bias": sd[f"style.{i + 1}.bias"]})
    res = [2**i for i in range(3, arch["size"].bit_length())]
    convs = [("b4.conv1", "conv1")] + [(f"b{r}.conv{j}", f"convs.{2 * k + j}")
                                       for k, r in enumerate(res) for j in (0, 1)]
    for n, (nvp, rp) in enumerate(convs):
        nv.update({f"synthesis.{nvp}.{k}": v for k, v in {
            "weight": sd[f"{rp}.conv.weight"][0], "affine.weight": sd[f"{rp}.conv.modulation.weight"],
            "affine.bias": sd[f"{rp}.conv.modulation.bias"], "noise_strength": sd[f"{rp}.noise.weight"][0],
            "bias": sd[f"{rp}.activate.bias"], "noise_const": sd[f"noises.noise_{n}"][0, 0],
            "resample_filter": FILTER}.items()})
    for nvp, rp in [("b4", "to_rgb1")] + [(f"b{r}", f"to_rgbs.{k}") for k, r in enumerate(res)]:
        nv.update({f"synthesis.{nvp}.torgb.{k}": v for k, v in {
            "weight": sd[f"{rp}.conv.weight"][0], "affine.weight": sd[f"{rp}.conv.modulation.weight"],
            "affine.bias": sd[f"{rp}.conv.modulation.bias"], "bias": sd[f"{rp}.bias"].reshape(3)}.items()})
        nv[f"synthesis.{nvp}.resample_filter"] = FILTER
    return nv


def _node_attrs(path: str, arch: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Class name and attributes that NVIDIA's networks.py gives the module at ``path``."""
    leaf = path.rsplit(".", 1)[-1]
    clamp, dim = arch["conv_clamp"], arch["style_dim"]
    if path == "":
        return "Generator", {"z_dim": dim, "c_dim": 0, "w_dim": dim, "img_resolution": arch["size"],
                             "img_channels": 3}
    if path == "mapping":
        kwargs = EasyDict(z_dim=dim, c_dim=0, w_dim=dim, num_layers=arch["n_mlp"])
        return "MappingNetwork", {"_init_kwargs": kwargs}
    if path == "synthesis":
        kwargs = EasyDict(w_dim=dim, img_resolution=arch["size"], img_channels=3, conv_clamp=clamp,
                          channel_base=16384 * arch["channel_multiplier"], channel_max=arch["channel_max"],
                          architecture="skip")
        return "SynthesisNetwork", {"_init_kwargs": kwargs}
    if leaf == "affine":
        return "FullyConnectedLayer", {"activation": "linear", "bias_gain": 1,
                                       "weight_gain": np.float64(dim**-0.5)}
    if leaf.startswith("fc"):
        return "FullyConnectedLayer", {"activation": "lrelu", "bias_gain": np.float64(arch["lr_mlp"])}
    if leaf.startswith("conv"):
        return "SynthesisLayer", {"activation": "lrelu", "conv_clamp": clamp,
                                  "up": 2 if leaf == "conv0" else 1, "act_gain": np.float64(np.sqrt(2))}
    if leaf == "torgb":
        return "ToRGBLayer", {"conv_clamp": clamp}
    return "SynthesisBlock", {"architecture": "skip", "resolution": int(leaf[1:])}


def nvidia_tree(nv: dict[str, torch.Tensor], arch: dict[str, Any], module_src: str) -> Net:
    """Nested persistent stand-ins holding the NVIDIA tensors as parameters/buffers."""
    nodes: dict[str, Net] = {}

    def node(path: str) -> Net:
        if path not in nodes:
            class_name, attrs = _node_attrs(path, arch)
            nodes[path] = Net(class_name, module_src, **attrs)
            if path:
                parent, _, name = path.rpartition(".")
                node(parent).state["_modules"][name] = nodes[path]
        return nodes[path]

    for key, value in nv.items():
        path, _, name = key.rpartition(".")
        kind = "_buffers" if name in BUFFERS else "_parameters"
        value = value.clone() if kind == "_buffers" else torch.nn.Parameter(value.clone())
        node(path).state[kind][name] = value
    return node("")


# ----- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source() -> Generator:
    """A tiny generator with non-trivial biases, noise strengths and mean latent."""
    torch.manual_seed(0)
    G = Generator(**ARCH)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise.weight", "bias")):
                p.add_(torch.randn_like(p) * 0.3)
        G.latent_avg.copy_(torch.randn(ARCH["style_dim"]))
    return G.eval()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code_was_executed"


@pytest.fixture
def make_tree(source: Generator, marker: Path):
    def make() -> Net:
        src = f"open({str(marker)!r}, 'w').write('executed')\n"
        nv = to_nvidia_state_dict({k: v.detach() for k, v in source.state_dict().items()}, ARCH)
        return nvidia_tree(nv, ARCH, src)
    return make


def snapshot(G_ema: Net, **extra: Any) -> dict[str, Any]:
    """The top-level dict of an NVIDIA training snapshot."""
    D = Net("Discriminator", G_ema.module_src)
    D.state["_parameters"]["weight"] = torch.nn.Parameter(torch.randn(4, 3))
    data = {"G": G_ema, "D": D, "G_ema": G_ema, "augment_pipe": None,
            "training_set_kwargs": EasyDict(path="data.zip", use_labels=False, xflip=True, resolution=16)}
    return {**data, **extra}


# ----- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [3, 4])
def test_loads_and_renders_identically(tmp_path, source, make_tree, marker, protocol):
    path = write_pickle(tmp_path / "g.pkl", snapshot(make_tree()), protocol)
    ckpt = read_nvidia_pickle(path)
    assert isinstance(ckpt, NvidiaCheckpoint)
    assert ckpt.arch == ARCH
    assert torch.equal(ckpt.latent_avg, source.latent_avg)
    G = Generator(**ckpt.arch)
    G.load_state_dict({**ckpt.state_dict, "latent_avg": ckpt.latent_avg})
    ws = torch.randn(2, source.n_latent, ARCH["style_dim"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source.synthesis(ws, noise_mode="const")
        assert torch.equal(G.synthesis(ws, noise_mode="const"), expected)
        assert (expected.abs() >= ARCH["conv_clamp"]).any()  # the clamp transfers and matters
    assert not marker.exists()
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.util" not in sys.modules


def test_rosinality_keys_and_shapes(tmp_path, source, make_tree):
    sd = read_nvidia_pickle(write_pickle(tmp_path / "g.pkl", snapshot(make_tree()))).state_dict
    expected = {k: v for k, v in source.state_dict().items() if k != "latent_avg"}
    assert set(sd) == set(expected)
    assert all(sd[k].shape == v.shape and sd[k].dtype == torch.float32 for k, v in expected.items())
    assert sd["input.input"].shape == (1, 16, 4, 4)
    assert sd["conv1.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert sd["to_rgbs.1.conv.weight"].shape == (1, 3, 16, 1, 1)
    assert sd["to_rgb1.bias"].shape == (1, 3, 1, 1) and sd["convs.3.noise.weight"].shape == (1,)
    assert [sd[f"noises.noise_{n}"].shape[-1] for n in range(5)] == [4, 8, 8, 16, 16]
    assert torch.equal(sd["convs.2.conv.blur.kernel"], FILTER * 4)
    assert torch.equal(sd["to_rgbs.0.upsample.kernel"], FILTER * 4)


def test_falls_back_to_G_without_G_ema(tmp_path, make_tree):
    data = snapshot(make_tree())
    del data["G_ema"]
    assert read_nvidia_pickle(write_pickle(tmp_path / "g.pkl", data)).arch == ARCH


class Payload:
    """A pickle that runs ``call(*args)`` on unpickling."""

    def __init__(self, call: Any, *args: Any) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple:
        return self.call, self.args


@pytest.mark.parametrize("build", [
    lambda m: (os.system, f"touch {m}"),
    lambda m: (eval, f"open({str(m)!r}, 'w')"),
    lambda m: (subprocess.Popen, ["touch", str(m)]),
], ids=["os.system", "eval", "subprocess"])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_code_payload_is_refused(tmp_path, make_tree, marker, build, where):
    evil = Payload(*build(marker))
    data = {"G_ema": evil} if where == "top" else snapshot(make_tree(), training_set_kwargs=EasyDict(x=evil))
    refused = "refused to load global .*not a plain NVIDIA StyleGAN2 checkpoint"
    with pytest.raises(HDNError, match=refused) as err:
        read_nvidia_pickle(write_pickle(tmp_path / "evil.pkl", data))
    assert "\n" not in str(err.value)
    assert evil.call.__name__ in str(err.value)
    assert not marker.exists()


def _stylegan3(tree: Net) -> None:
    synthesis = tree.sub("synthesis")
    synthesis.state["_modules"] = OrderedDict(
        (name, Net("SynthesisLayer", tree.module_src))
        for name in ("input", "L0_36_512", "L1_36_512", "L2_36_512"))


def _conditional(tree: Net) -> None:
    tree.sub("mapping").state["_init_kwargs"]["c_dim"] = 10
    tree.sub("mapping").state["_modules"]["embed"] = Net("FullyConnectedLayer", tree.module_src)


def _resnet(tree: Net) -> None:
    tree.sub("synthesis.b8").state["architecture"] = "resnet"


def _channel_max(tree: Net) -> None:
    tree.sub("synthesis").state["_init_kwargs"]["channel_max"] = 8  # the tensors have 16 channels


@pytest.mark.parametrize("mutate, message", [
    (_stylegan3, "found layers .* StyleGAN3"),
    (_conditional, "found a class-conditional generator"),
    (_resnet, "found a generator with the 'resnet' architecture"),
    (_channel_max, r"has shape .* expected"),
], ids=["stylegan3", "conditional", "resnet", "channels"])
def test_unsupported_generator_is_explained(tmp_path, make_tree, marker, mutate, message):
    tree = make_tree()
    mutate(tree)
    with pytest.raises(HDNError, match=message) as err:
        read_nvidia_pickle(write_pickle(tmp_path / "g.pkl", snapshot(tree)))
    assert "supported:" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],
    lambda b: b[:-1],
    lambda b: b"",
    lambda b: bytes(range(256)) * 4,
    lambda b: b[:2] + b"\xff" * 64,
], ids=["half", "last-byte", "empty", "garbage", "bad-opcodes"])
def test_damaged_file_gives_one_line_error(tmp_path, make_tree, damage):
    good = write_pickle(tmp_path / "g.pkl", snapshot(make_tree())).read_bytes()
    path = tmp_path / "bad.pkl"
    path.write_bytes(damage(good))
    with pytest.raises(HDNError) as err:
        read_nvidia_pickle(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_foreign_pickle(tmp_path):
    with pytest.raises(HDNError, match="cannot read"):
        read_nvidia_pickle(tmp_path / "absent.pkl")
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"g_ema": {}, "latent_avg": None}))
    with pytest.raises(HDNError, match="without a 'G_ema' or 'G' network"):
        read_nvidia_pickle(path)


def test_tensorflow_pickle_gets_a_conversion_hint(tmp_path):
    path = write_pickle(tmp_path / "tf.pkl", (Network(), Network(), Network()))
    with pytest.raises(HDNError, match="TensorFlow StyleGAN2 pickle; convert it"):
        read_nvidia_pickle(path)
