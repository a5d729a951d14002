"""Registry of public pretrained StyleGAN2 generators, with verified, cached downloads.

Each :class:`ZooEntry` names one checkpoint file: where to get it (mirrors, tried in order), its
SHA-256 and size, its file format, the generator architecture it needs, and where the hash came
from. :func:`fetch` returns the local path, downloading into :func:`hyperdomainnet.paths.models_dir`
on first use; afterwards it returns the cached, verified file without touching the network.

Provenance of the hashes (no value here was computed by this project; each is the Git LFS object
id that a public repository records for the exact file at a pinned commit):

* ``stylegan2-ffhq-config-f``: rosinality's conversion of NVIDIA's ``stylegan2-ffhq-config-f.pkl``
  (the Google Drive file StyleGAN-NADA, StyleCLIP, e4e and HyperDomainNet use). The same
  381,462,551-byte object appears in three unrelated mirrors: Hugging Face
  ``akhaliq/OneshotCLIP-stylegan2-ffhq`` (commit 024390a9), the Hugging Face Space
  ``ethanNeuralImage/inversion_testing`` and GitHub ``yypylypiv0422/babygan``.
* LSUN car / cat / church / horse: Hugging Face ``ZeqiangLai/StyleGAN2`` (formerly
  ``aaronb/StyleGAN2``) commit 5fde0cdb, rosinality-format conversions of the official config-f
  networks holding only ``g_ema`` (no discriminator; expect no ``latent_avg``).
* AFHQ cat: NVIDIA's ``stylegan2-afhqcat-512x512.pkl`` (StyleGAN3 release on NGC), as mirrored
  by Hugging Face ``DragGan/DragGan-Models`` commit bcc1b755.
* AFHQ dog: NVIDIA's ``afhqdog.pkl`` (stylegan2-ada-pytorch release), as mirrored by Hugging Face
  ``ZeqiangLai/StyleGAN2-pkl`` commit 7d9a80d4 (``ada/afhqdog.pkl``).

NVIDIA publishes no checksums; for the NVIDIA-hosted and Google Drive URLs the identity with the
mirrored object is inferred from provenance, not proven. The Hugging Face URLs are pinned to the
commit whose pointer gave the hash, so they serve exactly that object; when a primary URL serves
different bytes, the checksum fails and the downloader moves on to the next mirror.

All these networks are NVIDIA's and are licensed for non-commercial use only (NVIDIA Source Code
License-NC for StyleGAN2, NVIDIA Source Code License for StyleGAN2-ADA / StyleGAN3 releases).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import paths
from .download import (UnverifiedDownloadWarning, download_file, file_digest, read_record,
                       record_path)
from .errors import HDNError
from .stylegan2.generator import GeneratorArch

__all__ = [
    "ZooEntry",
    "FORMATS",
    "resolve",
    "list_entries",
    "names",
    "model_path",
    "cached_path",
    "fetch",
]

Format = Literal["rosinality-pt", "nvidia-pkl"]
FORMATS: tuple[str, ...] = ("rosinality-pt", "nvidia-pkl")

_NVIDIA_NC = ("NVIDIA Source Code License-NC: non-commercial research and evaluation use only "
              "(https://nvlabs.github.io/stylegan2/license.html)")
_NVIDIA_SCL = ("NVIDIA Source Code License: non-commercial research and evaluation use only "
               "(https://github.com/NVlabs/stylegan2-ada-pytorch/blob/main/LICENSE.txt)")


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable pretrained generator."""

    name: str
    file_name: str
    format: Format
    urls: tuple[str, ...]
    sha256: str | None
    size_bytes: int | None
    arch: GeneratorArch
    dataset: str
    description: str
    source: str
    license: str
    sha256_source: str
    #: True when ``sha256`` is a value published for this file (not computed by us on download).
    sha256_verified: bool
    aliases: tuple[str, ...] = ()
    notes: str = ""
    #: What the file is: "generator", "encoder", "domain" or "hypernet".
    kind: str = "generator"

    @property
    def resolution(self) -> int:
        return self.arch.size

    def path(self) -> Path:
        """Where the file lives in the cache (it may not exist yet)."""
        return paths.models_dir(create=False) / self.file_name

    def summary(self) -> str:
        return (f"{self.name} ({self.dataset}, {self.arch.size} px, {self.format}) "
                f"- {self.description}")


# ----------------------------------------------------------------------------------------------
# the registry

_HF_ZEQIANG = "https://huggingface.co/ZeqiangLai/StyleGAN2/resolve/5fde0cdb3664b04e8126dc6b0cab010e7813c18b"
_HF_ZEQIANG_SRC = ("Git LFS oid recorded by Hugging Face ZeqiangLai/StyleGAN2 (formerly "
                   "aaronb/StyleGAN2) commit 5fde0cdb3664b04e8126dc6b0cab010e7813c18b "
                   "('Upload 5 files'); the listed URL is pinned to that commit")
_LSUN_NOTE = ("A generator-only conversion (about a third of a full rosinality checkpoint): it "
              "holds the EMA generator under 'g_ema' and no discriminator; expect no latent_avg "
              "(compute the mean latent by sampling). The official network is NVIDIA's TensorFlow "
              "stylegan2-{k}-config-f.pkl; HyperDomainNet's own copy is a full rosinality "
              "checkpoint inside its StyleGAN2_weights.zip.")


def _lsun(key: str, dataset: str, size: int, sha256: str, nbytes: int, aliases: tuple[str, ...],
          what: str) -> ZooEntry:
    return ZooEntry(
        name=f"stylegan2-{key}-config-f",
        file_name=f"stylegan2-{key}-config-f.pt",
        format="rosinality-pt",
        urls=(f"{_HF_ZEQIANG}/stylegan2-{key}-config-f.pt",),
        sha256=sha256,
        size_bytes=nbytes,
        arch=GeneratorArch(size=size, n_mlp=8, channel_multiplier=2),
        dataset=dataset,
        description=(f"{what}, StyleGAN2 config-f ({size} px), used by HyperDomainNet and "
                     "StyleGAN-NADA"),
        source=("NVIDIA StyleGAN2 (Karras et al. 2020) config-f network, converted to the "
                "rosinality PyTorch layout; mirrored on Hugging Face by Zeqiang Lai (DragGAN "
                "re-implementation)"),
        license=_NVIDIA_NC,
        sha256_source=_HF_ZEQIANG_SRC,
        sha256_verified=True,
        aliases=aliases,
        notes=_LSUN_NOTE.format(k=key),
    )


_ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry(
        name="stylegan2-ffhq-config-f",
        file_name="stylegan2-ffhq-config-f.pt",
        format="rosinality-pt",
        urls=(
            "https://huggingface.co/akhaliq/OneshotCLIP-stylegan2-ffhq/resolve/"
            "024390a9508cb2d124dfaa8ec1caee3ad1a9da59/stylegan2-ffhq-config-f.pt",
            "https://drive.google.com/file/d/1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT/view",
        ),
        sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
        size_bytes=381_462_551,
        arch=GeneratorArch(size=1024, n_mlp=8, channel_multiplier=2),
        dataset="FFHQ",
        description="human faces, StyleGAN2 config-f (1024 px): the default source generator",
        source=("NVIDIA StyleGAN2 stylegan2-ffhq-config-f.pkl converted by rosinality's "
                "convert_weight.py; the Google Drive file (id 1EM87Uq…) linked by StyleGAN-NADA, "
                "StyleCLIP, e4e and used by HyperDomainNet"),
        license=_NVIDIA_NC,
        sha256_source=("Git LFS oid of the same 381,462,551-byte file in three independent "
                       "mirrors: Hugging Face akhaliq/OneshotCLIP-stylegan2-ffhq commit "
                       "024390a9508cb2d124dfaa8ec1caee3ad1a9da59, Hugging Face Space "
                       "ethanNeuralImage/inversion_testing (pretrained_models/), GitHub "
                       "yypylypiv0422/babygan (pretrained_models/); Google Drive publishes none"),
        sha256_verified=True,
        aliases=("ffhq", "ffhq-1024", "ffhq1024", "face", "faces"),
        notes="Full rosinality checkpoint: g, d, g_ema and latent_avg.",
    ),
    ZooEntry(
        name="stylegan2-afhqcat-512x512",
        file_name="stylegan2-afhqcat-512x512.pkl",
        format="nvidia-pkl",
        urls=(
            "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
            "stylegan2-afhqcat-512x512.pkl",
            "https://huggingface.co/DragGan/DragGan-Models/resolve/"
            "bcc1b7559bc7038004397648530eff423e43074d/stylegan2-afhqcat-512x512.pkl",
        ),
        sha256="17a83abee464242f8bb40dc6363d33c2fb087066b68fc0147677fdbf21f7a7a9",
        size_bytes=None,  # about 364 MB; the exact byte count is not published
        arch=GeneratorArch(size=512, n_mlp=8, channel_multiplier=2),
        dataset="AFHQ Cat",
        description="cat faces, StyleGAN2-ADA (512 px, paper512 config)",
        source=("NVIDIA StyleGAN2-ADA network for AFHQ Cat, PyTorch pickle as released with "
                "StyleGAN3 on NGC (nvidia/research/stylegan2)"),
        license=_NVIDIA_SCL,
        sha256_source=("Git LFS oid recorded by Hugging Face DragGan/DragGan-Models commit "
                       "bcc1b7559bc7038004397648530eff423e43074d, a mirror of the NGC file that "
                       "DragGAN's download script fetches; identity with the NGC URL inferred"),
        sha256_verified=True,
        aliases=("afhq-cat", "afhqcat", "afhq-cat-512", "afhqcat512"),
        notes=("paper512 config: channel base 32768 (= channel_multiplier 2), 8 mapping layers. "
               "NVIDIA's stylegan2-ada-pytorch afhqcat.pkl is the same network family but its "
               "bytes were not checked against this hash, so it is not listed as a mirror."),
    ),
    ZooEntry(
        name="stylegan2-ada-afhqdog",
        file_name="afhqdog.pkl",
        format="nvidia-pkl",
        urls=(
            "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/afhqdog.pkl",
            "https://huggingface.co/ZeqiangLai/StyleGAN2-pkl/resolve/"
            "7d9a80d433e2a63592e73622d3606d600f1fd46e/ada/afhqdog.pkl",
        ),
        sha256="f124ff3f23206052473a7212cbc1f4e095a73c231500411e9c3b81a11eac3662",
        size_bytes=None,  # about 364 MB; the exact byte count is not published
        arch=GeneratorArch(size=512, n_mlp=8, channel_multiplier=2),
        dataset="AFHQ Dog",
        description="dog faces, StyleGAN2-ADA (512 px, paper512 config)",
        source="NVIDIA stylegan2-ada-pytorch pretrained network afhqdog.pkl (PyTorch pickle)",
        license=_NVIDIA_SCL,
        sha256_source=("Git LFS oid recorded by Hugging Face ZeqiangLai/StyleGAN2-pkl (formerly "
                       "aaronb/StyleGAN2-pkl) commit 7d9a80d433e2a63592e73622d3606d600f1fd46e, "
                       "ada/afhqdog.pkl, a mirror of the stylegan2-ada-pytorch pretrained set; "
                       "identity with the nvlabs-fi-cdn URL inferred"),
        sha256_verified=True,
        aliases=("afhq-dog", "afhqdog", "afhq-dog-512", "afhqdog512", "stylegan2-afhqdog-512"),
        notes="paper512 config: channel base 32768 (= channel_multiplier 2), 8 mapping layers.",
    ),
    _lsun("car", "LSUN Car", 512,
          "c69f161fd576801027cbaa8b09142b5dd9f508034b2d0f4a2a0cdcbc1d587c9c", 123_949_595,
          ("car", "cars", "lsun-car"), "cars (512×384 content in a 512 px frame)"),
    _lsun("cat", "LSUN Cat", 256,
          "ff1036877c8964ba7c9e84316e67ea26bea64bbfcf6bd6c645f45589d248727f", 120_878_283,
          ("cat", "cats", "lsun-cat"), "cats"),
    _lsun("church", "LSUN Church", 256,
          "596f59f0ab72d3d5e821846dbf53fff0406c0103ff4fa46ae0a2508d80b3a2d0", 120_878_283,
          ("church", "churches", "lsun-church"), "church exteriors"),
    _lsun("horse", "LSUN Horse", 256,
          "894bc6a08a6bbe4c22bf91195dd4fdd4ee7f6859e06ce3517e7b3bfa9a8b2565", 120_878_283,
          ("horse", "horses", "lsun-horse"), "horses"),
)


def _key(text: str) -> str:
    key = text.strip().lower().replace("_", "-")
    for suffix in (".pt", ".pkl"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key


def _build_index(entries: Iterable[ZooEntry]) -> dict[str, ZooEntry]:
    index: dict[str, ZooEntry] = {}
    for entry in entries:
        for key in {_key(entry.name), _key(entry.file_name), *(_key(a) for a in entry.aliases)}:
            if key in index and index[key] is not entry:
                raise RuntimeError(f"zoo key {key!r} is used by {index[key].name} and {entry.name}")
            index[key] = entry
    return index


_INDEX = _build_index(_ENTRIES)


# ----------------------------------------------------------------------------------------------
# public API


def list_entries() -> list[ZooEntry]:
    """All registered generators, in registry order."""
    return list(_ENTRIES)


def names() -> list[str]:
    """Canonical names, in registry order."""
    return [e.name for e in _ENTRIES]


def resolve(name: str | ZooEntry) -> ZooEntry:
    """The entry for a name, alias or file name (case-insensitive; ``_`` and ``-`` alike).

    Raises :class:`HDNError` listing the known names when nothing matches.
    """
    if isinstance(name, ZooEntry):
        return name
    entry = _INDEX.get(_key(str(name)))
    if entry is None:
        known = ", ".join(f"{e.name} ({'/'.join(e.aliases[:1])})" if e.aliases else e.name
                          for e in _ENTRIES)
        raise HDNError(f"unknown pretrained generator {name!r}; known: {known}")
    return entry


def model_path(name: str | ZooEntry) -> Path:
    """Where ``fetch`` keeps the file for ``name`` (whether or not it is there yet)."""
    return resolve(name).path()


def cached_path(name: str | ZooEntry) -> Path | None:
    """The cached file for ``name`` if it is present and verified, else ``None``. No network.

    "Verified" means: the size and SHA-256 match the registry (the hash is taken from the
    ``.sha256.json`` record when that still matches the file, so this is cheap after the first
    check). For an entry without a known hash any complete file counts.
    """
    entry = resolve(name)
    path = entry.path()
    if not path.is_file():
        return None
    if entry.size_bytes is not None and path.stat().st_size != entry.size_bytes:
        return None
    if entry.sha256 is None:
        return path
    return path if file_digest(path, entry.sha256) == entry.sha256 else None


def fetch(name: str | ZooEntry, progress: bool = True) -> Path:
    """Local path of a verified checkpoint, downloading it into ``paths.models_dir()`` if needed.

    An existing verified file is returned without network access. A file at the cache path that
    does *not* match the registry is never overwritten silently: that raises :class:`HDNError`
    saying how to fix it. Entries without a published hash are downloaded, their hash recorded
    and an :class:`~hyperdomainnet.download.UnverifiedDownloadWarning` issued.
    """
    entry = resolve(name)
    dest = paths.models_dir() / entry.file_name
    if dest.exists():
        if not dest.is_file():
            raise HDNError(f"{dest} is in the way of {entry.name} and is not a file; "
                           "remove it and try again")
        size = dest.stat().st_size
        if entry.size_bytes is not None and size != entry.size_bytes:
            raise HDNError(
                f"{dest} does not match {entry.name} ({size} bytes, expected "
                f"{entry.size_bytes}); delete it to download again, or pass your own file by path")
        if entry.sha256 is None:
            rec = read_record(dest)
            if rec is None:
                digest = file_digest(dest, None)
                warnings.warn(
                    f"{entry.name}: no published SHA-256 is known; using the existing file "
                    f"{dest} with sha256 {digest} (recorded in {record_path(dest)}), unverified",
                    UnverifiedDownloadWarning, stacklevel=2)
            return dest
        digest = file_digest(dest, entry.sha256)
        if digest != entry.sha256:
            raise HDNError(
                f"{dest} does not match {entry.name} (sha256 {digest}, expected "
                f"{entry.sha256}); delete it to download again, or pass your own file by path")
        return dest
    return download_file(entry.urls, dest, entry.sha256, entry.size_bytes, progress=progress,
                         name=entry.name)
