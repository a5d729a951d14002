"""Library users catch our errors by their built-in kind; the CLI still prints them as one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from hyperdomainnet import load_generator
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.domain.parameterizations import parameterization_class
from hyperdomainnet.download import download
from hyperdomainnet.errors import ConfigError, DownloadError, FileFormatError, HDNError


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
