"""StyleGAN3 generators from NVIDIA pickles (written here in NVIDIA's persistence layout, never
executed) and from ``random:sg3-…`` specs."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from hyperdomainnet.errors import ConfigError, FileFormatError
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.stylegan3 import StyleGAN3Generator
from test_nvidia_pkl import EasyDict, Net, snapshot, write_pickle
from test_stylegan3 import ref_layers, tiny_generator

SPEC = "random:sg3-t:32:channel_base=256:channel_max=16:style_dim=16"


def nvidia_stylegan3_tree(G: StyleGAN3Generator, module_src: str, **synthesis_kwargs) -> Net:
    """G as NVIDIA's networks_stylegan3 persistent objects, filters designed with scipy."""
    arch = G.arch
    kernel, radial = (3, False) if arch.config == "t" else (1, True)
    kwargs = EasyDict(w_dim=arch.style_dim, img_resolution=arch.size, img_channels=3,
                      channel_base=arch.resolved("channel_base"), channel_max=arch.resolved("channel_max"),
                      conv_kernel=kernel, use_radial_filters=radial, magnitude_ema_beta=0.999)
    kwargs.update(synthesis_kwargs)
    root = Net("Generator", module_src, _init_kwargs=EasyDict(z_dim=arch.style_dim, c_dim=0, **kwargs))
    mapping = Net("MappingNetwork", module_src, _init_kwargs=EasyDict(z_dim=arch.style_dim, c_dim=0, num_ws=16))
    mapping.state["_buffers"]["w_avg"] = G.latent_avg.clone()
    for i, fc in enumerate(list(G.style)[1:]):
        node = Net("FullyConnectedLayer", module_src, activation="lrelu", bias_gain=np.float64(fc.lr_mul))
        node.state["_parameters"].update(weight=torch.nn.Parameter(fc.weight.clone()),
                                         bias=torch.nn.Parameter(fc.bias.clone()))
        mapping.state["_modules"][f"fc{i}"] = node
    synthesis = Net("SynthesisNetwork", module_src, _init_kwargs=kwargs)

    def affine(linear) -> Net:
        node = Net("FullyConnectedLayer", module_src, activation="linear", bias_gain=1)
        node.state["_parameters"].update(weight=torch.nn.Parameter(linear.weight.clone()),
                                         bias=torch.nn.Parameter(linear.bias.clone()))
        return node

    inp = Net("SynthesisInput", module_src, size=np.broadcast_to(np.asarray(G.input.size), [2]),
              sampling_rate=np.float64(G.input.sampling_rate))
    inp.state["_parameters"]["weight"] = torch.nn.Parameter(G.input.weight.clone())
    inp.state["_buffers"].update(transform=G.input.transform.clone(), freqs=G.input.freqs.clone(),
                                 phases=G.input.phases.clone())
    inp.state["_modules"]["affine"] = affine(G.input.affine)
    synthesis.state["_modules"]["input"] = inp
    for i, (layer, spec) in enumerate(zip(G.layers, ref_layers(arch, kernel, radial))):
        node = Net("SynthesisLayer", module_src, is_torgb=spec["torgb"], conv_kernel=spec["k"])
        node.state["_parameters"].update(weight=torch.nn.Parameter(layer.weight.clone()),
                                         bias=torch.nn.Parameter(layer.bias.clone()))
        node.state["_buffers"].update(magnitude_ema=layer.magnitude_ema.clone(), up_filter=spec["fu"],
                                      down_filter=spec["fd"])
        node.state["_modules"]["affine"] = affine(layer.affine)
        synthesis.state["_modules"][f"L{i}_{layer.design.out_size}_{layer.out_channels}"] = node
    root.state["_modules"].update(synthesis=synthesis, mapping=mapping)
    return root


@pytest.mark.parametrize("config", ["t", "r"])
def test_nvidia_stylegan3_pickle_loads_and_renders_identically(tmp_path, config):
    source = tiny_generator(config)
    source.latent_avg.copy_(torch.randn(source.style_dim))
    marker = tmp_path / "code_was_executed"
    tree = nvidia_stylegan3_tree(source, f"open({str(marker)!r}, 'w').write('x')\n")
    path = write_pickle(tmp_path / f"sg3-{config}.pkl", snapshot(tree))
    G = load_generator(path)
    assert isinstance(G, StyleGAN3Generator) and G.arch == source.arch
    assert G.identity["arch"]["family"] == "stylegan3" and G.identity["sha256"]
    ws = torch.randn(2, G.n_latent, G.style_dim)
    torch.testing.assert_close(G.synthesis(ws), source.synthesis(ws), rtol=0, atol=0)
    torch.testing.assert_close(G.mean_latent(), source.latent_avg)
    assert not marker.exists() and "torch_utils.persistence" not in sys.modules


def test_pickle_with_other_filters_is_refused(tmp_path):
    source = tiny_generator("t")
    tree = nvidia_stylegan3_tree(source, "", first_cutoff=3.0)  # the layers keep the default design
    path = write_pickle(tmp_path / "odd.pkl", snapshot(tree))
    with pytest.raises(FileFormatError, match="differs from the filter its cutoffs define|found layers") as exc:
        load_generator(path)
    assert "\n" not in str(exc.value)


def test_pickle_with_unsupported_layer_options_is_refused(tmp_path):
    tree = nvidia_stylegan3_tree(tiny_generator("t"), "", conv_kernel=1)
    path = write_pickle(tmp_path / "odd.pkl", snapshot(tree))
    with pytest.raises(FileFormatError, match="conv_kernel=1 with use_radial_filters=False"):
        load_generator(path)


def test_random_spec_is_deterministic_and_canonical():
    G = load_generator(SPEC + ":seed=3")
    again = load_generator("random:sg3-t:32:style_dim=16:channel_max=16:channel_base=256:seed=3")
    assert G.identity["name"] == again.identity["name"] == SPEC + ":seed=3"
    ws = G.ws(torch.randn(1, 16))
    torch.testing.assert_close(G.synthesis(ws), again.synthesis(ws))
    assert G.identity["arch"]["family"] == "stylegan3" and not any(p.requires_grad for p in G.parameters())
    assert load_generator("random:sg3-r:16:channel_max=8").arch.config == "r"
    for bad, message in [("random:sg3-x:32", "unknown StyleGAN3 config"), ("random:sg3-t:32:depth=2", "unknown option"),
                         ("random:sg3-t:24", "power of two"), ("random:sg3-t:abc", "invalid generator spec")]:
        with pytest.raises(ConfigError, match=message):
            load_generator(bad)


def test_zoo_lists_nvidia_stylegan3_pickles_pinned_on_first_download():
    from hyperdomainnet import zoo

    entries = {e.name: e for e in zoo.list_entries() if e.name.startswith("sg3-")}
    expected = {f"sg3-{c}-{d}-1024" for c in "tr" for d in ("ffhq", "ffhqu", "metfaces", "metfacesu")}
    expected |= {f"sg3-{c}-ffhqu-256" for c in "tr"} | {f"sg3-{c}-afhqv2-512" for c in "tr"}
    assert set(entries) == expected
    for name, e in entries.items():
        config, size = name.split("-")[1], int(name.rsplit("-", 1)[1])
        assert (e.arch["family"], e.arch["config"], e.resolution) == ("stylegan3", config, size)
        assert e.urls == (f"https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
                          f"{e.file_name}",) and e.file_name.endswith(f"{size}x{size}.pkl")
        assert e.sha256 is None and e.sha256_provenance == "none" and "pinned by us on first download" in e.sha256_source
    assert zoo.resolve("stylegan3-r-afhqv2-512x512.pkl").name == "sg3-r-afhqv2-512"
