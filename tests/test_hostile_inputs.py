"""Hostile inputs: files and options made to exhaust or crash a machine. Each must be refused as
one line on stderr (non-zero exit, no traceback, nothing written), quickly and before allocating."""
from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
import torch

from conftest import perturb, run_cli
from hyperdomainnet.domain.parameterizations import build_parameterization
from hyperdomainnet.errors import ConfigError
from hyperdomainnet.fileformat import META_KEY
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.images import save_image
from hyperdomainnet.loaders import load_generator
from hyperdomainnet.pickle_bounds import check_pickle_file
from hyperdomainnet.stylegan2.formats.rosinality import write_rosinality
from hyperdomainnet.stylegan2.generator import GeneratorArch
from test_bad_inputs import _rewrite, _snapshot

TINY = "random:32:channel_max=16:n_mlp=2"


def _naming(spec: str):
    """Metadata rewrite: the domain file names generator ``spec``."""
    def rewrite(meta: dict[str, str]) -> dict[str, str]:
        data = json.loads(meta[META_KEY])
        data["generator"] = {**data["generator"], "name": spec}
        return {META_KEY: json.dumps(data)}
    return rewrite


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    G = perturb(load_generator(TINY))
    domain = build_parameterization("domain_vector", G).to_domain_file(G, {"target": "Sketch"}).save(
        d / "domain.safetensors")
    found = {"domain": domain}
    for name, spec in {"n_mlp": "random:64:channel_max=32:n_mlp=2000000", "style_dim_zero": "random:64:style_dim=0",
                       "style_dim_negative": "random:64:style_dim=-4",
                       "channel_max": "random:64:channel_max=100000000",
                       "clamp_nan": "random:64:conv_clamp=nan"}.items():
        found[f"names_{name}"] = _rewrite(domain, d / f"{name}.safetensors", meta_fn=_naming(spec))
    pt = write_rosinality(G, d / "g.pt")
    ckpt = torch.load(pt, weights_only=True)
    ckpt["hdn_arch"] = {**ckpt["hdn_arch"], "style_dim": 512, "lr_mlp": float("inf")}
    torch.save(ckpt, d / "declares_inf.pt")
    ckpt["hdn_arch"] = {"size": 32, "payload": "x"}
    torch.save(ckpt, d / "declares_unknown.pt")
    found |= {"declares_inf": d / "declares_inf.pt", "declares_unknown": d / "declares_unknown.pt"}
    def shifted_layout(meta: dict[str, str]) -> dict[str, str]:
        data = json.loads(meta[META_KEY])
        data["domain_layout"] = [8, 24, *data["domain_layout"][2:]]  # same total as the generator's
        return {META_KEY: json.dumps(data)}
    found["shifted_layout"] = _rewrite(domain, d / "shifted.safetensors", meta_fn=shifted_layout)
    net = HyperDomainNet(G.domain_layout, embed_dim=32, width=16, depth=1, head_depth=1)
    hypernet = net.save(d / "hypernet.safetensors", {"clip_model": "random:tiny", "input": "text",
                                                      "generator": dict(G.identity)})

    def architecture(**changes):
        def rewrite(meta: dict[str, str]) -> dict[str, str]:
            data = json.loads(meta[META_KEY])
            data["architecture"] = {**data["architecture"], **changes}
            return {META_KEY: json.dumps(data)}
        return rewrite
    found["hypernet_wide"] = _rewrite(hypernet, d / "wide.safetensors", meta_fn=architecture(width=10**9))
    found["hypernet_deep"] = _rewrite(hypernet, d / "deep.safetensors", meta_fn=architecture(depth=10**12))
    found["yaml_bomb"] = d / "bomb.yaml"
    found["yaml_bomb"].write_text("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")) + "target: *i\n")
    found["yaml_long_value"] = d / "long.yaml"
    found["yaml_long_value"].write_text("lr: " + "9" * 500_000 + "x\n")
    found["yaml_huge"] = d / "huge.yaml"
    found["yaml_huge"].write_text("# padding\n" * 200_000)
    found["f64_domain"] = _rewrite(domain, d / "f64.safetensors", lambda t: torch.full_like(t, 1e300, dtype=torch.float64))
    found["photo"] = save_image(torch.zeros(3, 32, 32), d / "photo.png")
    return found


def case(name: str, expect: str, *argv: str):
    return pytest.param(list(argv), expect, id=name)


CASES = [
    # a generator spec is bounded before anything is allocated (item: 1.7 KB domain file)
    case("domain-names-2M-mapping-layers", "n_mlp must be an integer in [1, 16]", "generate", "--domain",
         "{names_n_mlp}", "--out", "{out}"),
    case("domain-names-style-dim-0", "style_dim", "generate", "--domain", "{names_style_dim_zero}", "--out", "{out}"),
    case("domain-names-style-dim-negative", "style_dim", "generate", "--domain", "{names_style_dim_negative}",
         "--out", "{out}"),
    case("domain-names-huge-channels", "channel_max", "generate", "--domain", "{names_channel_max}",
         "--out", "{out}"),
    case("domain-names-nan-clamp", "conv_clamp", "generate", "--domain", "{names_clamp_nan}", "--out", "{out}"),
    case("generator-spec-huge", "would have", "generate", "--generator",
         "random:1024:channel_max=2048:channel_multiplier=8:style_dim=2048", "--out", "{out}"),
    case("generator-spec-size", "size must be", "generate", "--generator", "random:8192", "--out", "{out}"),
    case("generator-file-declares-inf", "lr_mlp", "generate", "--generator", "{declares_inf}", "--out", "{out}"),
    case("generator-file-declares-unknown-key", "only keys", "info", "{declares_unknown}"),
    # a hypernetwork's recorded architecture is checked against its tensors before allocating
    case("hypernet-width-1e9", "do not match its recorded architecture", "info", "{hypernet_wide}"),
    case("hypernet-depth-1e12", "records an architecture of 1,000,000,000,007 layers", "info", "{hypernet_deep}"),
    # seeds stay within what the RNGs take
    case("generate-seed-2^64", "seeds must lie in [0, 9223372036854775807]", "generate", "--domain", "{domain}",
         "--seed", str(2**64), "--out", "{out}"),
    case("generate-seed-range-overflows", "the last of 2", "generate", "--domain", "{domain}", "--seed",
         str(2**63 - 1), "--n", "2", "--out", "{out}"),
    case("generate-seeds-2^64", "seeds must lie in", "generate", "--domain", "{domain}", "--seeds",
         f"1,{2**64}", "--out", "{out}"),
    case("generate-seeds-billion", "names 1,000,000,001 seeds", "generate", "--domain", "{domain}", "--seeds",
         "0-1000000000", "--out", "{out}"),
    case("generate-n-billion", "--n must be in [1, 1,000,000]", "generate", "--domain", "{domain}", "--n",
         "1000000000", "--out", "{out}"),
    case("generate-seed-float", "--seed", "generate", "--domain", "{domain}", "--seed", "1e23", "--out", "{out}"),
    case("adapt-seed-2^64", "seed", "adapt", "text", "--generator", TINY, "--clip", "random:tiny", "--target", "x",
         "--steps", "1", "--device", "cpu", "--seed", str(2**64), "--out", "{out}"),
    case("adapt-seed-float", "seed", "adapt", "text", "--generator", TINY, "--clip", "random:tiny", "--target", "x",
         "--steps", "1", "--device", "cpu", "--seed", "1e23", "--out", "{out}"),
    # a layout of the same total names the layer that differs
    case("layout-same-total", "modulated conv 0 of 7 takes 8 numbers where the generator's takes 16 (112 vs 112",
         "generate", "--domain", "{shifted_layout}", "--generator", TINY, "--out", "{out}"),
    # settings files: no alias expansion, bounded size and error text
    case("yaml-alias-bomb", "alias (*name) on line 2", "adapt", "text", "--config", "{yaml_bomb}", "--out", "{out}"),
    case("yaml-huge-file", "over the 1,000,000", "adapt", "text", "--config", "{yaml_huge}", "--out", "{out}"),
    case("yaml-long-value", "(500,003 characters)", "adapt", "text", "--config", "{yaml_long_value}", "--target",
         "x", "--out", "{out}"),
    # every float option and scale finite and in range
    case("alpha-sweep-nan", "--alpha-sweep", "generate", "--domain", "{domain}", "--alpha-sweep", "nan:1",
         "--out", "{out}"),
    case("alpha-sweep-huge", "[-10, 10]", "generate", "--domain", "{domain}", "--alpha-sweep", "0:1e308",
         "--out", "{out}"),
    case("truncation-huge", "--truncation", "generate", "--domain", "{domain}", "--truncation", "1e308",
         "--out", "{out}"),
    case("strength-huge", "strength", "generate", "--domain", "{domain}*1e308", "--out", "{out}"),
    case("interpolate-strength-huge", "strength", "generate", "--interpolate", "{domain}*-1e20", "{domain}",
         "--out", "{out}"),
    case("fps-zero", "--fps", "generate", "--interpolate", "{domain}", "{domain}", "--fps", "0", "--out", "{out}"),
    case("domain-f64-1e300", "NaN or inf", "generate", "--domain", "{f64_domain}", "--out", "{out}"),
    case("eval-truncation-huge", "--truncation", "eval", "--domain", "{domain}", "--clip", "random:tiny", "--lpips",
         "none", "--n", "2", "--truncation", "1e308", "--out", "{out}.json"),
    case("stylize-strength-nan", "--strength", "stylize", "{photo}", "--domain", "{domain}", "--strength", "nan",
         "--out", "{out}"),
    case("stylize-strength-inf", "--strength", "stylize", "{photo}", "--domain", "{domain}", "--strength", "inf",
         "--out", "{out}"),
    case("stylize-lambda-p-inf", "--lambda-p", "stylize", "{photo}", "--domain", "{domain}", "--lambda-p", "inf",
         "--out", "{out}"),
    case("eval-seed-2^64", "--seed", "eval", "--domain", "{domain}", "--clip", "random:tiny", "--lpips", "none",
         "--seed", str(2**64), "--out", "{out}.json"),
]


def assert_refused(capsys, tmp_path: Path, args: list[str], expect: str, inputs: Path) -> str:
    """``hdn args`` ends with one ``error:`` line holding ``expect``, no traceback, nothing written."""
    before = _snapshot(inputs)
    code, out, err = run_cli(capsys, *args)
    assert code != 0, f"accepted: {out}"
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expect.lower() in err.lower(), err
    assert "Traceback" not in out + err
    assert _snapshot(inputs) == before
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not written, f"half-written: {written}"
    assert len(err) < 1000, f"{len(err):,} characters"
    return err


@pytest.mark.parametrize("argv, expect", CASES)
def test_hostile_input_is_one_line(argv, expect, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    values = {k: str(v) for k, v in files.items()} | {"out": str(tmp_path / "work" / "out")}
    assert_refused(capsys, tmp_path, [a.format(**values) for a in argv], expect, files["domain"].parent)


@pytest.mark.parametrize("spec", ["random:8", "random:32:channel_max=16:n_mlp=2", "random:64:channel_multiplier=1",
                                  "random:16:style_dim=8:channel_max=4"])
def test_parameter_count_is_what_the_generator_allocates(spec):
    G = load_generator(spec)
    assert G.arch.parameter_count() == sum(p.numel() for p in G.parameters())


@pytest.mark.parametrize("fields", [{"size": 64, "n_mlp": 2_000_000}, {"size": 64, "style_dim": 0},
                                    {"size": 48}, {"size": 64, "style_dim": True}, {"size": 64.0},
                                    {"size": 64, "blur_taps": (0, 0)}, {"size": 64, "lr_mlp": float("nan")}])
def test_architecture_bounds(fields):
    with pytest.raises(ConfigError, match="generator"):
        GeneratorArch(**fields)


def _shared_tuple_bomb(levels: int) -> bytes:
    """A pickle of ``{t: 0}`` where t0 = () and t(k+1) = (tk, tk) through the memo: a few hundred
    bytes whose key would take 2^levels steps to hash."""
    out = bytearray(b"\x80\x02}q\x00)q\x010")  # PROTO 2, EMPTY_DICT, BINPUT 0, EMPTY_TUPLE, BINPUT 1, POP
    for k in range(1, levels + 1):
        out += b"h%ch%c\x86q%c0" % (k, k, k + 1)  # BINGET k, BINGET k, TUPLE2, BINPUT k+1, POP
    return bytes(out + b"h%cK\x00s." % (levels + 1))  # BINGET, BININT1 0, SETITEM, STOP


def _deep_list(depth: int) -> object:
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def _deep_list_pickle(depth: int) -> bytes:
    """``[[[…]]]`` nested ``depth`` deep, written without recursion: EMPTY_LIST × depth, APPEND × depth−1."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


@pytest.mark.parametrize("command", [["info"], ["generate", "--out", "{out}", "--generator"]])
@pytest.mark.parametrize("name, make, expect", [
    ("shared-tuple.pkl", lambda p: p.write_bytes(_shared_tuple_bomb(60)), "shared references"),
    ("deep.pkl", lambda p: p.write_bytes(_deep_list_pickle(100_000)), "levels deep"),
    ("deep.pt", lambda p: torch.save({"g_ema": _deep_list(250)}, p), "levels deep"),
])
def test_pickle_bombs_are_refused_quickly(command, name, make, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "home"))
    source = tmp_path / "in" / name
    source.parent.mkdir()
    make(source)
    assert len(_shared_tuple_bomb(60)) < 500
    args = [a.format(out=tmp_path / "work" / "out") for a in command] + [str(source)]
    start = time.monotonic()
    err = assert_refused(capsys, tmp_path / "work", args, expect, source.parent)
    assert str(source) in err and time.monotonic() - start < 10


def test_pickle_bounds_accept_shared_leaves(tmp_path):
    """Sharing within the limits (the same small object referenced many times) passes."""
    shared = ("conv", 3)
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({i: shared for i in range(1000)}, protocol=2))
    check_pickle_file(path)


def test_storage_bytes_inside_an_nvidia_pickle_are_bounded_too():
    from hyperdomainnet.errors import FileFormatError
    from hyperdomainnet.stylegan2.formats.nvidia_pkl import _load_storage

    start = time.monotonic()
    with pytest.raises(FileFormatError, match="tensor storage in the pickle builds an object"):
        _load_storage(_shared_tuple_bomb(60))
    assert time.monotonic() - start < 10
