"""Library users catch our errors by their built-in kind; the CLI still prints them as one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from hyperdomainnet import load_generator
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import parameterization_class
from hyperdomainnet.download import download
from hyperdomainnet.errors import ConfigError, DownloadError, FileFormatError, HDNError, first_line


def test_errors_are_caught_as_builtin_exceptions(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as bad_option:  # a setting the library does not know
        load_generator("random:64:colour=blue")
    with pytest.raises(ValueError) as bad_kind:
        parameterization_class("domain_vectors")
    corrupt = tmp_path / "domain.safetensors"
    corrupt.write_bytes(b"<html>not a domain</html>")
    with pytest.raises(ValueError) as bad_file:
        Domain.load(corrupt)
    with pytest.raises(OSError) as offline:  # nothing listens on the discard port
        download(["http://127.0.0.1:9/g.pt"], tmp_path / "g.pt", None, "g")
    assert isinstance(bad_option.value, ConfigError) and isinstance(bad_kind.value, ConfigError)
    assert isinstance(bad_file.value, FileFormatError) and isinstance(offline.value, DownloadError)
    for exc in (bad_option.value, bad_kind.value, bad_file.value, offline.value):
        assert isinstance(exc, HDNError) and "\n" not in str(exc)
    assert not (tmp_path / "g.pt").exists()


def test_first_line_is_safe_on_any_message() -> None:
    assert first_line(RuntimeError("")) == "RuntimeError"  # an empty message: the type, not an IndexError
    assert first_line(ValueError("\n  \n"), empty="no detail") == "no detail"
    assert first_line(OSError("\n  disk full  \ntraceback details")) == "disk full"
    buried = RuntimeError("Weights only load failed.\nWeightsUnpickler error: Unsupported global: os.system\nmore")
    assert first_line(buried) == "Unsupported global: os.system"
    assert first_line(ValueError("x" * 500), 120) == "x" * 120


def test_a_yaml_error_without_text_still_gives_one_line(tmp_path: Path) -> None:
    from hyperdomainnet.training.config import load_config_file

    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML \(.+\)$") as caught:
        load_config_file(path)
    assert "\n" not in str(caught.value)
