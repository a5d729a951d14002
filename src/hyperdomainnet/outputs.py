"""``hdn generate``'s outputs, written as rendered chunks arrive so that no request holds all its
images: the grid as one canvas of 8-bit pixels, individual PNGs as they come, and video frames
(one per row, its seeds side by side) assembled when a row is complete.

``check_request`` tells, before anything is rendered, whether the grid can be opened by an
image viewer (``MAX_GRID_PIXELS``) and whether the grid and frames fit in the memory available.
Layout as ``torchvision.utils.make_grid`` (``PADDING`` white pixels between and around tiles; a
single image unpadded), pixels as ``images.to_pil``, so the files equal ``save_grid``'s.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path
from .captions import add_captions
from .errors import ConfigError
from .images import PNG_COMPRESS_LEVEL, save_image, to_uint8

PADDING = 2
#: Pillow's decompression-bomb threshold: larger PNGs do not open in most viewers and tools.
MAX_GRID_PIXELS = 89_478_485


def canvas_shape(rows: int, cols: int, size: int) -> tuple[int, int]:
    """(height, width) of ``rows`` × ``cols`` tiles of ``size`` px."""
    if rows * cols == 1:
        return size, size
    return rows * (size + PADDING) + PADDING, cols * (size + PADDING) + PADDING


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_request(rows: int, seeds: int, size: int, grid: bool, video: bool) -> None:
    """Refuse, before rendering, a grid too large to open or a grid and frames that do not fit
    in the memory available (one line with the figures)."""
    what = f"{rows} row(s) × {seeds} seed(s) at {size} px"
    needed = 0
    if grid:
        height, width = canvas_shape(rows, seeds, size)
        if height * width > MAX_GRID_PIXELS:
            raise ConfigError(f"grid.png of {what} would be {width:,}×{height:,} px, over the "
                              f"{MAX_GRID_PIXELS:,} px image tools open; pass --no-grid --individual, "
                              "or fewer seeds or rows")
        needed += height * width * 3
    if video:
        height, width = canvas_shape(1, seeds, size)
        needed += 2 * rows * height * width * 3  # the frames, and their stacked copy for the encoder
    free = available_memory()
    if free is not None and needed > free:
        raise ConfigError(f"the grid and video frames of {what} need {needed / 2**30:,.1f} GiB of memory, "
                          f"{free / 2**30:,.1f} GiB is available; pass fewer seeds, frames or rows, or "
                          "--no-grid --individual")


class _Canvas:
    """``rows`` × ``cols`` tiles of ``size`` px on white, filled tile by tile."""

    def __init__(self, rows: int, cols: int, size: int) -> None:
        self.single = rows * cols == 1
        self.size = size
        self.pixels = np.full((*canvas_shape(rows, cols, size), 3), 255, dtype=np.uint8)

    def put(self, row: int, col: int, tile: np.ndarray) -> None:
        y, x = (0, 0) if self.single else (PADDING + row * (self.size + PADDING), PADDING + col * (self.size + PADDING))
        self.pixels[y:y + self.size, x:x + self.size] = tile


class OutputWriter:
    """Consumes ``(pairs, images)`` chunks (``render.iter_render``'s (row, seed index) pairs and
    (B, 3, H, W) images in [−1, 1]) and writes grid.png, ``out/<folder>/seed<S>.png`` and the
    video; ``finish`` writes what is whole only at the end and lists what was written. ``row_names``:
    the grid's row caption band (``captions.add_captions``), None for none."""

    def __init__(self, out: Path, folders: Sequence[str], seeds: Sequence[int], size: int, grid: bool,
                 individual: bool, video: Path | None, fps: float, row_names: Sequence[str] | None = None) -> None:
        self.out, self.folders, self.seeds, self.size = out, list(folders), list(seeds), size
        self.row_names = row_names
        self.individual, self.video, self.fps = individual, video, fps
        self.grid = _Canvas(len(self.folders), len(self.seeds), size) if grid else None
        self.pending: dict[int, _Canvas] = {}
        self.filled: dict[int, int] = {}
        self.frames: list[np.ndarray | None] = [None] * len(self.folders) if video is not None else []

    def add(self, pairs: Sequence[tuple[int, int]], images: torch.Tensor) -> None:
        tiles = to_uint8(images)
        for (r, i), image, tile in zip(pairs, images, tiles):
            if self.individual:
                save_image(image, self.out / self.folders[r] / f"seed{self.seeds[i]:04d}.png")
            if self.grid is not None:
                self.grid.put(r, i, tile)
            if self.video is not None:
                self._add_to_frame(r, i, tile)

    def _add_to_frame(self, r: int, i: int, tile: np.ndarray) -> None:
        frame = self.pending.setdefault(r, _Canvas(1, len(self.seeds), self.size))
        frame.put(0, i, tile)
        self.filled[r] = self.filled.get(r, 0) + 1
        if self.filled[r] == len(self.seeds):
            self.frames[r] = self.pending.pop(r).pixels

    def finish(self) -> list[str]:
        """Write the grid and the video; the paths (and the individual-file pattern) written."""
        from .render import write_video

        written: list[str] = []
        if self.video is not None:
            if any(frame is None for frame in self.frames):
                raise RuntimeError("a video frame was never rendered")
            written.append(str(write_video(np.stack(self.frames), self.video, self.fps)))
        if self.grid is not None:
            padding = 0 if self.grid.single else PADDING
            image = add_captions(Image.fromarray(self.grid.pixels), (self.size, self.size), padding, self.row_names)
            with atomic_path(self.out / "grid.png") as tmp:
                image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            written.append(str(self.out / "grid.png"))
        if self.individual:
            written.append(f"{self.out}/<row>/seed<S>.png")
        return written
