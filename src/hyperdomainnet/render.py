"""Rendering: seeded latents, many domains in one batched pass, grids, interpolation frames, videos.

A *row* is something rendered on every seed: the source generator or a domain file at strength α.
Seed s fixes everything random about its image: z ~ N(0, I) drawn from ``torch.Generator`` seeded
with s, and (``noise_mode="random"``) the noise maps drawn next from the same generator, so a seed
gives the same image alone, in any batch, and in every row.

Every chunk of ``batch_size`` (row, seed) pairs renders through the one door from domain data to
images, ``domain.parameterizations.synthesize``: vector kinds (domain vectors, StyleSpace offsets)
and the source row share batched passes with per-sample vectors (rows of different placements,
``batch_key``, go to separate passes; the source row has δ = 0). Multi-tensor kinds change the
conv weights for the whole batch and are rendered row by row.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path
from .device import autocast, resolve_precision
from .domain.arithmetic import combine
from .domain.files import Domain
from .domain.parameterizations import batch_key, synthesize
from .errors import ConfigError, HDNError
from .loaders import load_generator
from .preflight import check_downloads, generator_download
from .progress import progress_bar
from .ranges import FPS, TRUNCATION, finite_in
from .seeds import MAX_SEEDS, seed_range
from .stylegan2.generator import NOISE_MODES, Generator

VIDEO_HINT = "pip install imageio-ffmpeg (or the 'video' extra: pip install 'hyperdomainnet[video]')"
VIDEO_SUFFIXES: tuple[str, ...] = (".gif", ".mp4")
MAX_FRAMES = 10_000  # frames of an animation: over 13 minutes at 12 fps

__all__ = ["Row", "domain_name", "row_label", "parse_seeds", "seed_latents", "generator_for", "iter_render",
           "render_chunks", "render_rows", "interpolation_rows", "alpha_sweep_rows", "write_video"]


@dataclass(frozen=True)
class Row:
    """One row of renders: ``domain`` at strength ``scale`` (None: the source generator)."""

    label: str
    domain: Domain | None = None
    scale: float = 1.0


def domain_name(domain: Domain, path: str | Path) -> str:
    """What a domain is called: its metadata's ``name``, else its prompt (``target``), else its
    reference image's file name, else the file's stem (every run writes ``domain.safetensors``)."""
    meta = domain.metadata
    reference = meta.get("reference")
    for value in (meta.get("name"), meta.get("target"),
                  reference.get("file") if isinstance(reference, dict) else reference):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return Path(path).stem


def row_label(name: str, scale: float = 1.0) -> str:
    """``name`` at strength 1, else ``name*α``."""
    return name if scale == 1 else f"{name}*{scale:g}"


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` → [0, …, 7]; ``"1,5,9-11"`` → [1, 5, 9, 10, 11] (in [0, MAX_SEED], in order given,
    at most MAX_SEEDS in all)."""
    ranges: list[tuple[int, int]] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            lo, dash, hi = part.partition("-")
            first, last = int(lo), int(hi) if dash else int(lo)
            if first < 0 or last < first:
                raise ValueError
            ranges.append((first, last - first + 1))
    except ValueError:
        raise ConfigError(f"bad seeds {text!r}: give non-negative integers and ranges, e.g. 0-7 or 1,5,9-11") from None
    if sum(count for _, count in ranges) > MAX_SEEDS:
        raise ConfigError(f"--seeds {text!r} names {sum(count for _, count in ranges):,} seeds; at most "
                          f"{MAX_SEEDS:,} per command")
    return [seed for first, count in ranges for seed in seed_range(first, count, "--seeds")]


def _seed_rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seed_latents(G: Generator, seeds: Sequence[int], truncation: float = 1.0,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """W+ codes (N, n_latent, style_dim): z_s ~ N(0, I) from ``Generator(seed=s)``, ψ-truncated."""
    z = torch.cat([torch.randn(1, G.style_dim, generator=_seed_rng(s)) for s in seeds])
    with torch.no_grad():
        return G.ws(z.to(device), truncation=truncation)


def _seed_noise(G: Generator, seeds: Sequence[int], device: torch.device) -> list[torch.Tensor | None]:
    """Per-layer noise (N, 1, h, w): drawn after z from each seed's generator."""
    per_seed = []
    for s in seeds:
        rng = _seed_rng(s)
        torch.randn(1, G.style_dim, generator=rng)  # z comes first
        per_seed.append(G.make_noise("random", 1, torch.device("cpu"), generator=rng))
    return [torch.cat(layer).to(device) for layer in zip(*per_seed)]


def generator_for(spec: str | None, rows: Sequence[Row], device: torch.device | str) -> Generator:
    """The generator ``spec`` names (a --generator), else the one the first domain row names; a zoo
    generator not cached here fails fast when it cannot be downloaded (``preflight``)."""
    named = spec or next((row.domain.generator.get("name") for row in rows if row.domain is not None), None)
    if not named:
        raise ConfigError("no generator given and the domain files do not name one; pass --generator")
    check_downloads([needed for needed in (generator_download(named),) if needed is not None])
    if spec:
        return load_generator(spec, device)
    try:
        return load_generator(named, device)
    except HDNError as exc:
        raise ConfigError(f"cannot load generator {named!r} named in the domain file ({exc}); pass --generator") from None


@torch.no_grad()
def iter_render(G: Generator, rows: Sequence[Row], seeds: Sequence[int], truncation: float = 1.0,
                noise_mode: str = "const", batch_size: int = 16, style_mixing: bool = True
                ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """Render every (row, seed) pair in chunks of ≤ ``batch_size``; image domains style-mix their
    reference into the ψ-truncated codes (:meth:`Domain.mix`) unless ``style_mixing`` is false.

    Yields (pairs, images): pairs are (row index, seed index), images (len(pairs), 3, H, W) on
    G's device, in [−1, 1]. Domain files are checked against G.
    """
    if noise_mode not in NOISE_MODES:
        raise ConfigError(f"unknown noise mode {noise_mode!r}; use one of {', '.join(NOISE_MODES)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    finite_in(truncation, "--truncation (1 = none, 0.7 = typical)", TRUNCATION)
    for row in rows:
        if row.domain is not None:
            row.domain.check_generator(G)
    device = G.latent_avg.device
    groups: dict[str | int, list[int]] = {}
    for r, row in enumerate(rows):
        groups.setdefault(batch_key(row.domain) or r, []).append(r)  # a weight-kind row: a group of its own
    for members in groups.values():
        pairs = [(r, i) for r in members for i in range(len(seeds))]
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            idx = [i for _, i in chunk]
            ws = seed_latents(G, [seeds[i] for i in idx], truncation, device)  # per chunk: memory stays bounded
            kwargs: dict[str, Any] = ({"noise": _seed_noise(G, [seeds[i] for i in idx], device)}
                                      if noise_mode == "random" else {"noise_mode": noise_mode})
            yield chunk, synthesize(G, ws, [rows[r].domain for r, _ in chunk], [rows[r].scale for r, _ in chunk],
                                    style_mixing, **kwargs)


def render_chunks(G: Generator, rows: Sequence[Row], seeds: Sequence[int], truncation: float = 1.0,
                  noise_mode: str = "const", batch_size: int = 16, progress: bool = False,
                  precision: str = "fp32", style_mixing: bool = True
                  ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """``iter_render``'s chunks as float32 on the CPU, rendered under ``precision`` (fp32 | bf16 |
    fp16 | auto: ``device.resolve_precision``); ``progress`` draws a bar of rendered images on a
    terminal. Only one chunk is in memory at a time."""
    device = G.latent_avg.device
    precision = resolve_precision(precision, device)
    with progress_bar(len(rows) * len(seeds), "rendering", "img", enabled=progress) as bar:
        chunks = iter_render(G, rows, seeds, truncation, noise_mode, batch_size, style_mixing)
        while True:
            with autocast(device, precision):
                pairs, images = next(chunks, (None, None))
            if pairs is None:
                return
            yield pairs, images.float().cpu()
            bar.update(len(pairs))


def render_rows(G: Generator, rows: Sequence[Row], seeds: Sequence[int], truncation: float = 1.0,
                noise_mode: str = "const", batch_size: int = 16, progress: bool = False,
                precision: str = "fp32", style_mixing: bool = True) -> torch.Tensor:
    """All rows on all seeds: (R, N, 3, H, W) float32 on the CPU (see ``render_chunks``)."""
    out = torch.empty(len(rows), len(seeds), 3, G.size, G.size)
    for pairs, images in render_chunks(G, rows, seeds, truncation, noise_mode, batch_size, progress, precision,
                                       style_mixing):
        for (r, i), image in zip(pairs, images):
            out[r, i] = image
    return out


def _frame_positions(frames: int, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    if not 2 <= frames <= MAX_FRAMES:
        raise ConfigError(f"--frames must be in [2, {MAX_FRAMES:,}], got {frames:,}")
    return torch.linspace(lo, hi, frames, dtype=torch.float64).tolist()


def interpolation_rows(a: Domain, b: Domain, frames: int, labels: Sequence[str] = ("a", "b"),
                       scales: Sequence[float] = (1.0, 1.0)) -> list[Row]:
    """Frames t = 0 … 1: the domain (1 − t)·α_a·a + t·α_b·b (``combine``), one row each."""
    return [Row(f"t={t:.3f}", combine([(a, (1 - t) * scales[0]), (b, t * scales[1])], labels))
            for t in _frame_positions(frames)]


def alpha_sweep_rows(row: Row, frames: int, lo: float, hi: float) -> list[Row]:
    """Frames α = lo … hi of a domain row: its strength times α, one row each."""
    if row.domain is None:
        raise ConfigError("an α sweep needs a domain, not the source generator")
    return [Row(f"{row.label}*{alpha:.3f}", row.domain, row.scale * alpha)
            for alpha in _frame_positions(frames, lo, hi)]


def _check_ffmpeg() -> None:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise ConfigError(f"writing MP4 needs the ffmpeg codec: {VIDEO_HINT}; or write a .gif") from None


def write_video(frames: np.ndarray, path: str | Path, fps: float = 12.0) -> Path:
    """Write (T, H, W, 3) uint8 frames atomically as an endlessly looping GIF or an H.264 MP4."""
    import imageio.v3 as iio

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"cannot write video {target}: use a .gif or .mp4 file name")
    finite_in(fps, "--fps", FPS)
    if suffix == ".mp4":
        _check_ffmpeg()
    with atomic_path(target) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
        else:  # even frame sides (generator sizes and the padding are even) keep ffmpeg from rescaling
            iio.imwrite(tmp, frames, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=2,
                        output_params=["-f", "mp4"])
    return target
