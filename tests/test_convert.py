"""Conversion of official HyperDomainNet checkpoints (synthetic files with the official structure)."""
from __future__ import annotations

import fractions
import sys
import types
import typing
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperdomainnet import zoo
from hyperdomainnet.convert import convert_official, read_official_checkpoint
from hyperdomainnet.domain.files import REFERENCE_LATENT, Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet

CAT_LAYOUT = [512] * 10 + [256, 256, 128]  # LSUN cat config-f, 256 px
CAT_ARGS = {"img_size": 256, "latent_size": 512, "map_layers": 8, "channel_multiplier": 2,
            "device": "cuda:0", "checkpoint_path": "pretrained/StyleGAN2/stylegan2-cat-config-f.pt"}
MAPPER_CONFIG = {"backbone_type": "shared", "mapper_type": "residual_channelin", "activation": "relu",
                 "input_dimension": 8, "width": 16, "head_depth": 2, "backbone_depth": 3,
                 "no_coarse": False, "no_fine": False, "no_medium": False}


def cin_mult_state(layout: list[int], name: str = "params_in") -> dict[str, torch.Tensor]:
    """Official BaseParametrization('cin_mult') state dict with conv_l filled with l (keys shuffled)."""
    order = sorted(range(len(layout)), key=str)  # conv_0, conv_1, conv_10, conv_11, …, conv_2
    return {f"heads.conv_{i}.{name}": torch.full((1, 1, layout[i], 1, 1), float(i)) for i in order}


def save(path: Path, payload: dict) -> Path:
    torch.save(payload, path)
    return path


def param_ckpt(tmp_path: Path, name: str = "td_anime.pt", **extra) -> Path:
    payload = {"model_type": "parameterization", "patch_key": "cin_mult",
               "state_dict": cin_mult_state(CAT_LAYOUT), "sg2_params": CAT_ARGS, "da_type": "td"}
    return save(tmp_path / name, {**payload, **extra})


# ----- an independent model with the official mapper's module names and forward pass ----------
class OfficialStem(nn.Module):
    def __init__(self, embed: int, width: int) -> None:
        super().__init__()
        self.lin, self.bn = nn.Linear(embed, width), nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.lin(x)))


class OfficialResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.input_block = nn.Sequential(nn.Linear(width, 512), nn.BatchNorm1d(512), nn.ReLU())
        self.second_block = nn.Sequential(nn.Linear(512, width), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.second_block(self.input_block(x)) + x)


def official_mapper(layout: list[int], embed: int = 8, width: int = 16, depth: int = 3,
                    head_depth: int = 2) -> nn.Module:
    root = nn.Module()
    root.backbone = nn.Module()
    root.backbone.backbone = nn.Sequential(OfficialStem(embed, width),
                                           *[OfficialResBlock(width) for _ in range(depth - 1)])
    root.heads = nn.ModuleDict({f"conv_{i}": nn.ModuleDict({"in": nn.Sequential(
        *[OfficialResBlock(width) for _ in range(head_depth - 1)], nn.Linear(width, c))})
        for i, c in enumerate(layout)})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # far from the 0.01 init, with non-trivial BatchNorm statistics
        for p in root.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        for m in root.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return root.eval()


def official_forward(root: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = root.backbone.backbone(x)
    return torch.cat([root.heads[f"conv_{i}"]["in"](h) for i in range(len(root.heads))], dim=1)


def mapper_payload(root: nn.Module, **extra) -> dict:
    return {"model_type": "mapper", "mapper_config": dict(MAPPER_CONFIG), "patch_key": "cin_mult",
            "state_dict": root.state_dict(), "sg2_params": CAT_ARGS, "da_type": "td", **extra}


# ----- parameterization → domain file -----------------------------------------------------------
def test_parameterization_becomes_a_domain_file_in_layer_order(tmp_path) -> None:
    out = convert_official(param_ckpt(tmp_path), tmp_path / "anime.safetensors", identify=zoo.generator_identity)
    domain = Domain.load(out)
    assert domain.kind == "domain_vector" and domain.placement == "after_demod"
    assert domain.domain_layout == CAT_LAYOUT and domain.vector.shape == (5760,)
    for i, part in enumerate(torch.split(domain.vector, CAT_LAYOUT)):
        assert torch.all(part == i), f"layer {i} landed in the wrong place"
    entry = zoo.resolve("cat")
    assert domain.generator["name"] == entry.name == "stylegan2-cat-config-f"
    assert domain.generator["sha256"] == entry.sha256
    assert domain.generator["arch"]["size"] == 256
    official = domain.metadata["official"]
    assert official["patch_key"] == "cin_mult" and official["da_type"] == "td"
    assert official["file"] == "td_anime.pt" and len(official["sha256"]) == 64
    assert "device" not in official["generator_args"]


def test_given_generator_supplies_identity_and_is_checked(tmp_path, tiny_G) -> None:
    layout = list(tiny_G.domain_layout)
    latents = torch.randn(1, 3, tiny_G.style_dim)  # the last 3 of 8 W+ layers, as released (11 of 18)
    state = {f"module.{k}": v for k, v in cin_mult_state(layout, "ch_in_wise_shift").items()}
    path = save(tmp_path / "im2im.pt", {"model_type": "parameterization", "patch_key": "cin_mult",
                                        "state_dict": state, "sg_2_params": {"img_size": 32},
                                        "da_type": "im2im", "style_latents": latents})
    domain = Domain.load(convert_official(path, tmp_path / "d.safetensors", generator=tiny_G))
    assert domain.generator == tiny_G.identity
    domain.check_generator(tiny_G)
    assert torch.equal(domain.vector[layout[0]:2 * layout[0]], torch.ones(layout[1]))
    assert domain.tensors[REFERENCE_LATENT].equal(latents) and domain.style_mixing_from == 8 - 3
    ws = tiny_G.ws(torch.randn(2, tiny_G.style_dim, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(tiny_G.synthesis(ws, **domain.synthesis_kwargs()),
                       tiny_G.synthesis(ws, domain=domain.vector))
    with pytest.raises(HDNError, match="another layout"):
        convert_official(param_ckpt(tmp_path), tmp_path / "x.safetensors", generator=tiny_G)


def test_unknown_generator_file_is_recorded_by_name(tmp_path) -> None:
    args = {**CAT_ARGS, "checkpoint_path": "pretrained/my_gan.pt"}
    domain = Domain.load(convert_official(param_ckpt(tmp_path, sg2_params=args),
                                          tmp_path / "d.safetensors"))
    assert domain.generator["name"] == "my_gan.pt" and domain.generator["sha256"] is None
    assert domain.generator["arch"]["size"] == 256


# ----- mapper → HyperDomainNet ------------------------------------------------------------------
def test_mapper_becomes_a_hyperdomainnet_with_identical_outputs(tmp_path) -> None:
    root = official_mapper(CAT_LAYOUT)
    path = save(tmp_path / "mapper_20_td.pt", mapper_payload(root))
    net = HyperDomainNet.load(convert_official(path, tmp_path / "h.safetensors", identify=zoo.generator_identity))
    assert net.architecture == {"domain_layout": CAT_LAYOUT, "embed_dim": 8, "width": 16,
                                "depth": 3, "head_depth": 2}
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    with torch.no_grad():
        expected = official_forward(root, x)
    assert torch.allclose(net.domain_vectors(x), expected, atol=1e-5)
    assert net.metadata["clip_model"] == "ViT-B/32" and net.metadata["input"] == "text"
    assert net.metadata["generator"]["name"] == "stylegan2-cat-config-f"
    assert net.metadata["official"]["mapper_config"] == MAPPER_CONFIG


def test_image_mapper_records_its_clip_encoder(tmp_path, tiny_G) -> None:
    layout = list(tiny_G.domain_layout)
    root = official_mapper(layout, depth=2, head_depth=3)
    path = save(tmp_path / "mapper_base_im2im.pt",
                mapper_payload(root, clip_encoder="ViT-B/16", da_type="im2im"))
    net = HyperDomainNet.load(convert_official(path, tmp_path / "h.safetensors", generator=tiny_G))
    assert (net.depth, net.head_depth) == (2, 3)
    assert net.metadata["clip_model"] == "ViT-B/16" and net.metadata["input"] == "image"
    assert net.metadata["generator"] == tiny_G.identity
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(net.domain_vectors(x), official_forward(root, x), atol=1e-5)


def fake_omegaconf() -> dict[str, types.ModuleType]:
    """Modules whose classes pickle like OmegaConf's DictConfig (NEWOBJ + BUILD with a state dict)."""
    modules = {name: types.ModuleType(name) for name in
               ("omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig")}
    for module, name in (("omegaconf.base", "Metadata"), ("omegaconf.base", "ContainerMetadata"),
                         ("omegaconf.nodes", "AnyNode"), ("omegaconf.dictconfig", "DictConfig")):
        cls = type(name, (), {"__module__": module})
        setattr(modules[module], name, cls)
    return modules


def omegaconf_like(values: dict, mods: dict[str, types.ModuleType]) -> object:
    """An object graph shaped like a pickled DictConfig (metadata, parent links, value nodes)."""
    base = mods["omegaconf.base"]
    cfg = mods["omegaconf.dictconfig"].DictConfig()
    meta = base.ContainerMetadata()
    meta.__dict__.update(ref_type=typing.Any, object_type=dict, optional=True, key=None, flags={},
                         resolver_cache=defaultdict(dict), key_type=typing.Any,
                         element_type=typing.Any)
    content = {}
    for key, value in values.items():
        node, node_meta = mods["omegaconf.nodes"].AnyNode(), base.Metadata()
        node_meta.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=key,
                                  flags={})
        node.__dict__.update(_metadata=node_meta, _parent=cfg, _val=value)
        content[key] = node
    cfg.__dict__.update(_metadata=meta, _parent=None, _content=content)
    return cfg


def test_omegaconf_mapper_config_is_read_without_omegaconf(tmp_path, monkeypatch) -> None:
    root = official_mapper(CAT_LAYOUT, depth=2)
    config = {**MAPPER_CONFIG, "backbone_depth": 2}
    with monkeypatch.context() as patch:
        mods = fake_omegaconf()
        for name, module in mods.items():
            patch.setitem(sys.modules, name, module)
        path = save(tmp_path / "mapper.pt",
                    mapper_payload(root, mapper_config=omegaconf_like(config, mods)))
    assert "omegaconf" not in sys.modules or not hasattr(sys.modules["omegaconf"], "DictConfig")
    ckpt = read_official_checkpoint(path)
    assert ckpt.mapper_config == config
    net = HyperDomainNet.load(convert_official(path, tmp_path / "h.safetensors"))
    assert net.metadata["official"]["mapper_config"] == config and net.depth == 2


# ----- refusals -----------------------------------------------------------------------------------
def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = param_ckpt(tmp_path)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    root = official_mapper([4, 4, 4])
    sep = {**mapper_payload(root), "mapper_config": {**MAPPER_CONFIG,
                                                     "mapper_type": "residual_channelwise_sep"}}
    extra_key = {**cin_mult_state(CAT_LAYOUT), "heads.conv_0.params_out": torch.zeros(1, 512, 1, 1, 1)}
    gap = {k: v for k, v in cin_mult_state(CAT_LAYOUT).items() if k != "heads.conv_3.params_in"}
    cases = {
        "missing": (tmp_path / "nope.pt", "does not exist"),
        "trunc": (tmp_path / "trunc.pt", "not a readable PyTorch checkpoint"),
        "junk": (tmp_path / "junk.pt", "not a readable PyTorch checkpoint"),
        "generator": (save(tmp_path / "g.pt", {"g_ema": {"w": torch.zeros(1)}}),
                      "not an official HyperDomainNet checkpoint"),
        "pickle": (save(tmp_path / "p.pt", {"model_type": "mapper", "x": fractions.Fraction(1, 3)}),
                   "fractions.Fraction"),
        "original": (save(tmp_path / "o.pt", {"model_type": "original", "state_dict": {}}),
                     "fully fine-tuned"),
        "csep": (param_ckpt(tmp_path, "csep.pt", patch_key="csep_mult"), "'csep_mult'"),
        "sep_mapper": (save(tmp_path / "s.pt", sep), "residual_channelwise_sep"),
        "extra_key": (save(tmp_path / "e.pt", {"model_type": "parameterization",
                                              "patch_key": "cin_mult", "state_dict": extra_key}),
                      "params_out"),
        "gap": (save(tmp_path / "gap.pt", {"model_type": "parameterization", "patch_key": "cin_mult",
                                          "state_dict": gap}), "layers"),
    }
    return cases


def test_bad_files_give_one_line_errors(tmp_path) -> None:
    for name, (path, match) in bad_files(tmp_path).items():
        with pytest.raises(HDNError, match=match) as info:
            convert_official(path, tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value), name
        assert not (tmp_path / f"{name}.safetensors").exists()


def test_cli_convert(tmp_path: Path, capsys) -> None:
    from hyperdomainnet.cli import main

    ckpt = param_ckpt(tmp_path)
    code = main(["convert", str(ckpt), "--out", str(tmp_path / "d.safetensors")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert Domain.load(tmp_path / "d.safetensors").generator["name"] == zoo.resolve("cat").name
    code = main(["convert", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.safetensors")])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
