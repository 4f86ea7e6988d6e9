"""Drawing the contact sheet: a grid of panel tiles with captions, as JPEG pages (pure drawing;
:mod:`storycore.review._board` decides which pages to draw and writes them)."""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

if TYPE_CHECKING:
    from storycore.review._board import BoardPanel
    from storycore.review._thumbcache import Thumbnails

__all__ = [
    "CAPTION_H",
    "GAP",
    "HEADER_H",
    "MAX_COLUMNS",
    "THUMB_W",
    "BoardGeometry",
    "board_geometry",
    "draw_sheet",
    "sheet_jpeg",
]

MAX_COLUMNS = 4
THUMB_W = 320
CAPTION_H = 44
GAP = 16
HEADER_H = 56

_BG = (30, 30, 32)
_TILE = (52, 52, 56)
_EMPTY = (96, 96, 100)
_TEXT = (236, 236, 236)
_MUTED = (170, 170, 176)
_BADGE = (230, 126, 34)


@dataclass(frozen=True)
class BoardGeometry:
    columns: int
    rows: int
    thumb: tuple[int, int]
    size: tuple[int, int]


def board_geometry(panels: int, aspect: float = 16 / 9) -> BoardGeometry:
    """Pure: columns, rows, thumbnail box and sheet size for ``panels`` panels."""
    columns = max(1, min(MAX_COLUMNS, panels))
    rows = max(1, math.ceil(panels / columns))
    thumb = (THUMB_W, max(1, round(THUMB_W / aspect)))
    width = GAP + columns * (thumb[0] + GAP)
    height = HEADER_H + rows * (thumb[1] + CAPTION_H + GAP) + GAP
    return BoardGeometry(columns, rows, thumb, (width, height))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> str:
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _badge(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    font = _font(12)
    label = "PLACEHOLDER"
    w = int(draw.textlength(label, font=font)) + 12
    draw.rectangle((x, y, x + w, y + 20), fill=_BADGE)
    draw.text((x + 6, y + 3), label, fill=(20, 20, 20), font=font)


def sheet_jpeg(sheet: Image.Image, key: str | None) -> bytes:
    """A sheet page as JPEG: photographic tiles, 5x smaller and 15x faster to encode than PNG.
    Captions are light on dark (luma, which JPEG keeps at full resolution), so the usual 4:2:0
    chroma subsampling costs them nothing."""
    buffer = io.BytesIO()
    extra = {"comment": key} if key else {}
    sheet.save(buffer, format="JPEG", quality=88, **extra)
    return buffer.getvalue()


def draw_sheet(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None,
    thumbs: Thumbnails,
    canvas: Image.Image | None = None,
) -> Image.Image:
    """Draw a sheet page; on ``canvas`` when it has the page's size (long boards draw every
    full page on one canvas: no 24 MB allocation per page to fragment the heap)."""
    geo = board_geometry(len(panels), aspect)
    if canvas is not None and canvas.size == geo.size:
        sheet = canvas
        sheet.paste(_BG, (0, 0, *geo.size))
    else:
        sheet = Image.new("RGB", geo.size, _BG)
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (GAP, 16),
        _fit_text(draw, title, _font(22), geo.size[0] - 2 * GAP),
        fill=_TEXT,
        font=_font(22),
    )
    tw, th = geo.thumb
    for index, panel in enumerate(panels):
        col, row = index % geo.columns, index // geo.columns
        x = GAP + col * (tw + GAP)
        y = HEADER_H + row * (th + CAPTION_H + GAP)
        draw.rectangle((x, y, x + tw - 1, y + th + CAPTION_H - 1), fill=_TILE)
        if images is not None:
            image = images.get(panel.shot_id)
            thumb = ImageOps.contain(image, (tw, th), Image.Resampling.LANCZOS) if image else None
        else:
            thumb = thumbs.tile(panel, (tw, th))
        if thumb is not None:
            sheet.paste(thumb, (x + (tw - thumb.width) // 2, y + (th - thumb.height) // 2))
        else:
            draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=_EMPTY)
            label = "file missing" if panel.record is not None else "not rendered"
            font = _font(16)
            lw = draw.textlength(label, font=font)
            draw.text((x + (tw - lw) / 2, y + th / 2 - 9), label, fill=_TEXT, font=font)
        if panel.placeholder:
            _badge(draw, x + 6, y + 6)
        caption = _fit_text(draw, f"{panel.shot_number}. {panel.title}", _font(15), tw - 12)
        draw.text((x + 6, y + th + 6), caption, fill=_TEXT, font=_font(15))
        draw.text((x + 6, y + th + 25), panel.shot_id, fill=_MUTED, font=_font(12))
    return sheet
