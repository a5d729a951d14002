"""Our file format (safetensors + JSON metadata) and the domain files built on it: round trips and
one-line errors for missing, corrupt, foreign, incomplete and non-finite files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import run_cli
from hyperdomainnet import Domain, FileFormatError, HDNError, load_domain, load_generator
from hyperdomainnet import fileformat
from hyperdomainnet.domain.files import FORMAT

FMT = "hyperdomainnet.test"
SPEC = "random:16:channel_max=8:n_mlp=2"


def raw_file(path: Path, tensors: dict[str, torch.Tensor], meta: str | None) -> Path:
    """A safetensors file with ``meta`` as the raw ``hyperdomainnet`` entry, bypassing our checks."""
    save_file(tensors, str(path), metadata=None if meta is None else {fileformat.META_KEY: meta})
    return path


def domain_meta(G, **changes) -> dict:
    meta = {"format": FORMAT, "version": 1, "kind": "domain_vector", "placement": "after_demod",
            "domain_layout": list(G.domain_layout), "generator": dict(G.identity)}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def test_round_trip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    path = fileformat.save(tmp_path / "x.safetensors", tensors, {"note": "hi", "n": [1, 2]},
                           file_format=FMT, version=2)
    back, meta = fileformat.load(path, file_format=FMT, max_version=2, what="test file", required=("note",))
    assert meta == {"note": "hi", "n": [1, 2]}
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert fileformat.read_metadata(path) == {"note": "hi", "n": [1, 2], "format": FMT, "version": 2}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensors_are_not_written(tmp_path: Path, value: float) -> None:
    target = tmp_path / "x.safetensors"
    with pytest.raises(FileFormatError, match="NaN or inf") as info:
        fileformat.save(target, {"v": torch.tensor([0.0, value])}, {}, file_format=FMT, version=1)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="not JSON"):
        fileformat.save(tmp_path / "x.safetensors", {"v": torch.zeros(1)}, {"p": object()}, file_format=FMT,
                        version=1)
    assert list(tmp_path.iterdir()) == []


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = fileformat.save(tmp_path / "good.safetensors", {"v": torch.ones(64)}, {"note": "x"},
                           file_format=FMT, version=1)
    (tmp_path / "trunc.safetensors").write_bytes(good.read_bytes()[:40])
    v = {"v": torch.zeros(2)}
    return {
        "missing": (tmp_path / "nope.safetensors", "does not exist"),
        "truncated": (tmp_path / "trunc.safetensors", "not a readable safetensors"),
        "no metadata": (raw_file(tmp_path / "plain.safetensors", v, None), "no hyperdomainnet metadata"),
        "not JSON": (raw_file(tmp_path / "notjson.safetensors", v, "{format: oops"), "not a JSON object"),
        "JSON list": (raw_file(tmp_path / "list.safetensors", v, "[1, 2]"), "not a JSON object"),
        "other format": (raw_file(tmp_path / "other.safetensors", v, json.dumps({"format": "x", "version": 1})),
                         "format 'x'"),
        "no version": (raw_file(tmp_path / "nover.safetensors", v, json.dumps({"format": FMT, "note": 1})),
                       "no valid format version"),
        "newer": (raw_file(tmp_path / "newer.safetensors", v, json.dumps({"format": FMT, "version": 9, "note": 1})),
                  "upgrade hyperdomainnet"),
        "missing key": (raw_file(tmp_path / "nokey.safetensors", v, json.dumps({"format": FMT, "version": 1})),
                        "lacks note"),
        "NaN": (raw_file(tmp_path / "nan.safetensors", {"v": torch.tensor([1.0, float("nan")])},
                         json.dumps({"format": FMT, "version": 1, "note": 1})), "NaN or inf"),
    }


def test_bad_files_give_one_line_file_format_errors(tmp_path: Path) -> None:
    for name, (path, message) in bad_files(tmp_path).items():
        with pytest.raises(FileFormatError, match=message) as info:
            fileformat.load(path, file_format=FMT, max_version=1, what="test file", required=("note",))
        assert "\n" not in str(info.value), name


# ----- domain files ------------------------------------------------------------------------------
def test_domain_save_load_and_package_root_names(tmp_path: Path) -> None:
    G = load_generator(SPEC)
    domain = Domain(torch.randn(G.domain_size), "domain_vector", G.domain_layout, G.identity,
                    metadata={"target": "Pixar"})
    path = domain.save(tmp_path / "d.safetensors")
    back = load_domain(path)
    assert isinstance(back, Domain) and torch.equal(back.vector, domain.vector)
    assert back.metadata == {"target": "Pixar"} and back.generator == G.identity


def test_saving_a_nan_domain_writes_nothing(tmp_path: Path) -> None:
    G = load_generator(SPEC)
    vector = torch.zeros(G.domain_size)
    vector[3] = float("inf")
    with pytest.raises(FileFormatError, match="NaN or inf"):
        Domain(vector, "domain_vector", G.domain_layout, G.identity).save(tmp_path / "d.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case,message", [
    ("nan", "NaN or inf"),
    ("no layout", "lacks domain_layout"),
    ("no generator", "lacks generator"),
    ("not JSON", "not a JSON object"),
    ("layout type", "wrong type"),
])
def test_bad_domain_files_are_refused_by_load_prune_generate_and_info(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    G = load_generator(SPEC)
    vector = torch.randn(G.domain_size)
    meta = json.dumps(domain_meta(G))
    if case == "nan":
        vector[0] = float("nan")
    elif case == "no layout":
        meta = json.dumps(domain_meta(G, domain_layout=None))
    elif case == "no generator":
        meta = json.dumps(domain_meta(G, generator=None))
    elif case == "not JSON":
        meta = meta[:-5]
    else:
        meta = json.dumps(domain_meta(G, domain_layout="8 8 8"))
    path = raw_file(tmp_path / "bad.safetensors", {"vector": vector}, meta)
    with pytest.raises(HDNError, match=message):
        Domain.load(path)
    commands = {
        "prune": ["prune", "--domain", str(path), "--out", str(tmp_path / "pruned.safetensors")],
        "generate": ["generate", "--generator", SPEC, "--domain", str(path), "--n", "1", "--device", "cpu",
                     "--out", str(tmp_path / "out")],
        "info": ["info", str(path)],
    }
    for name, argv in commands.items():
        code, out, err = run_cli(capsys, *argv)
        assert code == 1, (name, out, err)
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (name, err)
    assert not (tmp_path / "pruned.safetensors").exists()
    assert not any((tmp_path / "out").glob("*.png"))


def test_hypernetwork_file_uses_the_same_format_and_typed_errors(tmp_path: Path) -> None:
    from hyperdomainnet import ConfigError, HyperDomainNet

    net = HyperDomainNet([4, 3], embed_dim=8, width=16, depth=2, head_depth=2)
    with pytest.raises(ConfigError, match="clip_model"):
        net.save(tmp_path / "h.safetensors", {"input": "text"})
    path = net.save(tmp_path / "h.safetensors", {"clip_model": "random:tiny", "input": "text"})
    tensors, meta = fileformat.load(path, file_format="hyperdomainnet.hypernet", max_version=1,
                                    what="HyperDomainNet file")
    assert meta["architecture"]["domain_layout"] == [4, 3] and "stem.linear.weight" in tensors
    with pytest.raises(FileFormatError, match="not a HyperDomainNet file"):
        HyperDomainNet.load(Domain(torch.zeros(7), "domain_vector", [4, 3], {"name": "x"})
                            .save(tmp_path / "d.safetensors"))
    tensors["stem.linear.weight"][0, 0] = float("nan")
    raw = raw_file(tmp_path / "nan.safetensors", tensors, json.dumps(fileformat.read_metadata(path)))
    with pytest.raises(FileFormatError, match="NaN or inf"):
        HyperDomainNet.load(raw)
