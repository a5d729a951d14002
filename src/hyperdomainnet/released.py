"""Unpack the released HyperDomainNet archive and convert every model in it to our files.

The archive holds ``td_checkpoints/*.pt`` (text-driven domains), ``im2im_checkpoints/*.pt``
(image-driven domains) and ``mapper_*.pt`` (hypernetworks), possibly under a top folder. Each is
converted by :func:`hyperdomainnet.convert.convert_official` into ``<name>.safetensors`` beside the
manifest, which is written last and lists name, kind, member and description of each converted model.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .convert import convert_official
from .errors import FileFormatError, HDNError

MEMBER = re.compile(r"(?:^|/)(?P<folder>td_checkpoints/|im2im_checkpoints/)?(?P<stem>[^/.][^/]*)\.pt$")
FOLDER_KIND = {"td_checkpoints/": "text-driven", "im2im_checkpoints/": "image-driven"}
#: The largest member accepted (the released mappers are a few hundred MB).
MAX_MEMBER_BYTES = 1 << 31


def released_models(members: list[str], fixed_names: dict[str, str]) -> list[dict[str, Any]]:
    """Name, kind and description of each model among archive ``members``.

    Domains are named after their file (``td_checkpoints/td_anime.pt`` → ``td-anime``); hypernetworks
    (``mapper_*.pt`` at the top) take ``fixed_names[file]`` when given, else their file's name.
    """
    models = []
    for member in members:
        match = MEMBER.search(member)
        if match is None or "__MACOSX/" in member or not (match["folder"] or match["stem"].startswith("mapper_")):
            continue
        file = f"{match['stem']}.pt"
        name = fixed_names.get(file) or re.sub(r"[^a-z0-9.]+", "-", match["stem"].lower())
        what = f"{FOLDER_KIND[match['folder']]} domain {name}" if match["folder"] else f"hypernetwork {file}"
        models.append({"name": name, "kind": "domain" if match["folder"] else "hypernet", "member": member,
                       "description": f"released {what}"})
    return models


def _extract(zf: zipfile.ZipFile, member: str, folder: Path, archive: Path) -> Path:
    """Copy ``member`` to ``folder`` under its base name (no path from the zip is followed); its
    declared size is bounded, and a member whose bytes differ from its entry (size, CRC) is refused."""
    info = zf.getinfo(member)
    if info.file_size > MAX_MEMBER_BYTES:
        raise FileFormatError(f"{archive} member {member} claims {info.file_size:,} bytes (more than "
                              f"{MAX_MEMBER_BYTES:,}); it is not the released archive, delete it to download again")
    local = folder / Path(member).name
    try:
        with zf.open(info) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise FileFormatError(f"{archive} is corrupt at member {member} ({type(exc).__name__}: {exc}); "
                              "delete it to download again") from None
    return local


def convert_archive(archive: Path, manifest: Path, fixed_names: dict[str, str],
                    identify: Callable[[str], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Convert every released model in the zip ``archive`` into ``manifest``'s folder; return the manifest.

    ``identify`` maps the generator file a checkpoint names to that generator's identity (the
    registry's). A model that does not convert is skipped with a one-line warning; the others stay
    usable. A corrupt archive is a one-line :class:`FileFormatError` and leaves no manifest.
    """
    converted = []
    try:
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory() as tmp:
            for model in released_models(zf.namelist(), fixed_names):
                local = _extract(zf, model["member"], Path(tmp), archive)
                try:
                    convert_official(local, manifest.parent / f"{model['name']}.safetensors", identify=identify)
                    converted.append(model)
                except HDNError as exc:
                    reason = str(exc).replace(str(local), Path(model["member"]).name)
                    warnings.warn(f"skipped {model['member']} of {archive}: {reason}", stacklevel=2)
                local.unlink()
    except (zipfile.BadZipFile, EOFError) as exc:  # a truncated or foreign file; disk errors stay themselves
        raise FileFormatError(f"{archive} is not a readable zip archive ({type(exc).__name__}: {exc}); "
                              "delete it to download again") from None
    with atomic_path(manifest) as out:
        out.write_text(json.dumps(converted, indent=1))
    return converted
