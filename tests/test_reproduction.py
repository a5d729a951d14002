"""docs/REPRODUCTION.md stays true: its tables name the settings each preset file resolves to, and
the `_plus` tables list every setting where a `_plus` preset differs from its official preset."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hyperdomainnet.training.config import (HypernetConfig, ImageAdaptConfig, TextAdaptConfig, build_config,
                                            load_preset, preset_names)

DOC = Path(__file__).resolve().parents[1] / "docs" / "REPRODUCTION.md"
CONFIGS = {"text": (TextAdaptConfig, {}), "image": (ImageAdaptConfig, {"image": "ref.png"}),
           "multi_text": (HypernetConfig, {}), "multi_image": (HypernetConfig, {"images": "refs.txt"})}
KIND = {name: kind for kind in CONFIGS for name in preset_names(kind)}
SPAN = re.compile(r"`([^`]+)`")


def resolved(name: str) -> dict[str, Any]:
    """The preset's settings after validation, defaults included, as plain YAML values."""
    cls, placeholders = CONFIGS[KIND[name]]
    return build_config(cls, load_preset(name), placeholders).model_dump(mode="json")


def sections() -> dict[str, list[list[str]]]:
    """Each '### name' section's table rows (header included), cells stripped."""
    found: dict[str, list[list[str]]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            current = found.setdefault(line[4:].strip(), [])
        elif current is not None and line.startswith("|") and not line.startswith("|---"):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
    return found


def settings(cell: str) -> dict[str, Any]:
    """The `key: value` code spans of a table cell, parsed as YAML."""
    out: dict[str, Any] = {}
    for span in SPAN.findall(cell):
        if ": " in span:
            out.update(yaml.safe_load(span))
    return out


def column_settings(rows: list[list[str]], column: str) -> dict[str, Any]:
    index = rows[0].index(column)
    out: dict[str, Any] = {}
    for row in rows[1:]:
        out.update(settings(row[index]))
    return out


def test_every_preset_has_a_section() -> None:
    assert set(sections()) == set(KIND)


@pytest.mark.parametrize("name", sorted(n for n in KIND if not n.endswith("_plus")))
def test_official_tables_match_the_preset_files(name: str) -> None:
    rows = sections()[name]
    assert rows[0][:3] == ["official field", "official value", "ours"]
    stated = column_settings(rows, "ours")
    config = resolved(name)
    assert stated["quirks"] == "official" and stated["clip_precision"] == "auto"
    assert {k: config[k] for k in stated} == stated


@pytest.mark.parametrize("name", sorted(n for n in KIND if n.endswith("_plus")))
def test_plus_tables_list_every_difference(name: str) -> None:
    rows = sections()[name]
    official = rows[0][1]
    assert rows[0][2] == name and official in KIND
    mine, theirs = resolved(name), resolved(official)
    different = {k for k in mine if mine[k] != theirs[k]}
    assert set(column_settings(rows, name)) == different
    assert column_settings(rows, name) == {k: mine[k] for k in different}
    assert column_settings(rows, official) == {k: theirs[k] for k in different}


def test_plus_presets_headers_name_their_differences() -> None:
    """The YAML header of a `_plus` preset explains each difference listed in the document."""
    from importlib import resources

    for name in (n for n in KIND if n.endswith("_plus")):
        header = resources.files("hyperdomainnet.configs").joinpath(f"{name}.yaml").read_text().split("\ntrainer:")[0]
        assert header.count("\n# - ") >= len(sections()[name]) - 1, name
