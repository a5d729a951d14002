"""What a file looks like, from its first bytes (for errors naming what was given)."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from hyperdomainnet.filekind import PICKLE, SAFETENSORS, ZIP, looks_like


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt, expected", [("PNG", "a PNG image"), ("JPEG", "a JPEG image"), ("WEBP", "a WebP image"),
                                           ("GIF", "a GIF image"), ("TIFF", "a TIFF image")])
def test_images_by_format(tmp_path: Path, fmt: str, expected: str) -> None:
    path = tmp_path / "picture.bin"  # the name says nothing: the bytes do
    Image.new("RGB", (8, 8), "red").save(path, format=fmt)
    assert looks_like(path) == expected


def test_checkpoints_text_and_the_rest(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    assert looks_like(tmp_path / "ckpt.pt") == ZIP
    assert looks_like(write(tmp_path / "p.pkl", pickle.dumps({"a": 1}, protocol=4))) == PICKLE
    header = b'{"__metadata__":{}}'
    assert looks_like(write(tmp_path / "s", struct.pack("<Q", len(header)) + header)) == SAFETENSORS
    assert looks_like(write(tmp_path / "cut", struct.pack("<Q", 500) + b'{"v": {"dtype"')) == SAFETENSORS  # truncated
    assert looks_like(write(tmp_path / "t.txt", "Sketch – Photo\n".encode())) == "a text file"
    assert looks_like(write(tmp_path / "e", b"")) == "an empty file"
    assert looks_like(write(tmp_path / "b", bytes(range(256)))) == "binary data of an unknown kind"
    assert looks_like(tmp_path) == "a folder"
