"""Caption bands for image grids: row names in a band to the right of the rows, column headers in
a band under the columns, black text on white. The tiles keep their places (top-left origin), so
a grid's cells are where they are without captions."""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

MAX_ROW_NAME = 48   # characters; longer names end in "…"


def _font(cell: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at about a tenth of a tile (10 to 40 px)."""
    return ImageFont.load_default(size=max(10, min(40, cell // 10)))


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
         width: float) -> str:
    """``text`` cut (ending in "…") until it is at most ``width`` pixels wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def add_captions(grid: Image.Image, cell: tuple[int, int], padding: int, rows: Sequence[str] | None = None,
                 columns: Sequence[str] | None = None) -> Image.Image:
    """``grid`` (tiles of ``cell`` = (height, width) with ``padding`` around them) with ``rows``
    written beside each row of tiles and ``columns`` under each column; unchanged without either."""
    if not rows and not columns:
        return grid
    height, width = cell
    font = _font(min(height, width))
    measure = ImageDraw.Draw(grid)
    line = font.getbbox("Hg")[3] + 4
    names = [n if len(n) <= MAX_ROW_NAME else n[:MAX_ROW_NAME - 1] + "…" for n in rows or []]
    band_w = int(max((measure.textlength(n, font=font) for n in names), default=0)) + 2 * padding + 6 if names else 0
    band_h = line + 2 * padding if columns else 0
    out = Image.new("RGB", (grid.width + band_w, grid.height + band_h), "white")
    out.paste(grid, (0, 0))
    draw = ImageDraw.Draw(out)
    for r, name in enumerate(names):
        y = padding + r * (height + padding) + height // 2
        draw.text((grid.width + 4, y), name, fill="black", font=font, anchor="lm")
    for c, header in enumerate(columns or []):
        x = padding + c * (width + padding) + width // 2
        draw.text((x, grid.height + band_h // 2), _fit(draw, header, font, width), fill="black", font=font, anchor="mm")
    return out
