"""The storyboard sheet: a contact-sheet JPEG and a self-contained HTML page of every panel.

``write_board(project)`` writes, atomically::

    <project>/storyboard/board.jpg   a grid of every panel's active image (or a grey "not
                                     rendered" tile), shot number and title under each,
                                     a PLACEHOLDER badge on placeholder frames
    <project>/storyboard/board.html  one page, no external requests: images embedded as data:
                                     URIs of downscaled JPEGs; shot number, title, description,
                                     camera and lighting notes, seed, render time, badge

Panels follow the storyboard's order. The page carries a Content-Security-Policy that allows
nothing but inline styles and ``data:`` images, so a browser opening it fetches nothing.

Boards of any size cost the same memory: thumbnails are made once per image content and cached
in ``.storycore/cache/thumbs.sqlite`` (which ``storycore assets clean`` may delete), panels
are drawn and written one at a time, and a board of more than :data:`SHEET_PAGE` panels gets
further sheets ``board-2.jpg``, ``board-3.jpg``... Each page remembers (in its JPEG comment)
a key of what it shows; a refresh redraws only the pages whose panels changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from storycore._board_html import html_chunks
from storycore._fsutil import atomic_write_bytes, atomic_writer
from storycore._thumbcache import ThumbCache
from storycore.assets import record_path_ok
from storycore.manifest import AssetRecord, asset_index, resolve_asset

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "BOARD_DIR",
    "CAPTION_H",
    "GAP",
    "HEADER_H",
    "MAX_COLUMNS",
    "SHEET_PAGE",
    "THUMB_W",
    "BoardFiles",
    "BoardGeometry",
    "BoardPanel",
    "board_aspect",
    "board_geometry",
    "board_panels",
    "cache_thumbnail",
    "render_board_html",
    "render_board_sheet",
    "thumb_cache",
    "write_board",
]

BOARD_DIR = "storyboard"
MAX_COLUMNS = 4
THUMB_W = 320
HTML_THUMB_W = 480
CAPTION_H = 44
GAP = 16
HEADER_H = 56
SHEET_PAGE = 96
THUMB_CACHE = Path(".storycore") / "cache"
_SHEET_FORMAT = 2  # bump when the drawing changes: every page is drawn again

_BG = (30, 30, 32)
_TILE = (52, 52, 56)
_EMPTY = (96, 96, 100)
_TEXT = (236, 236, 236)
_MUTED = (170, 170, 176)
_BADGE = (230, 126, 34)


@dataclass(frozen=True)
class BoardFiles:
    """Where the sheet was written, and what it shows."""

    sheet: Path
    html: Path
    panels: int = 0
    pages: tuple[Path, ...] = ()
    rendered: int = 0
    placeholders: int = 0
    missing: int = 0


@dataclass(frozen=True)
class BoardGeometry:
    columns: int
    rows: int
    thumb: tuple[int, int]
    size: tuple[int, int]


@dataclass(frozen=True)
class BoardPanel:
    """One panel as the sheet shows it. ``image`` is the active file, when there is one."""

    shot_id: str
    shot_number: int
    title: str
    description: str
    camera: str
    lighting: str
    record: AssetRecord | None
    image: Path | None

    @property
    def placeholder(self) -> bool:
        return self.record is not None and self.record.placeholder

    @property
    def seed(self) -> int | None:
        return self.record.seed if self.record else None

    @property
    def render_seconds(self) -> float | None:
        if self.record is None:
            return None
        timings = self.record.timings
        return timings.total if timings.total is not None else timings.execution


def board_aspect(project: Project) -> float:
    """Width / height of a panel, from the project's target aspect ratio (16:9 by default)."""
    raw = project.data.get("config", {}).get("target_aspect_ratio") or "16:9"
    try:
        left, _, right = str(raw).partition(":")
        ratio = float(left) / float(right)
    except (ValueError, ZeroDivisionError):
        ratio = 16 / 9
    return min(4.0, max(0.25, ratio)) if math.isfinite(ratio) else 16 / 9


def board_geometry(panels: int, aspect: float = 16 / 9) -> BoardGeometry:
    """Pure: columns, rows, thumbnail box and sheet size for ``panels`` panels."""
    columns = max(1, min(MAX_COLUMNS, panels))
    rows = max(1, math.ceil(panels / columns))
    thumb = (THUMB_W, max(1, round(THUMB_W / aspect)))
    width = GAP + columns * (thumb[0] + GAP)
    height = HEADER_H + rows * (thumb[1] + CAPTION_H + GAP) + GAP
    return BoardGeometry(columns, rows, thumb, (width, height))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def board_panels(project: Project) -> list[BoardPanel]:
    """Every shot of the storyboard with its active render (if any), in storyboard order.

    Read from the storyboard's JSON (validated when the project was loaded), not from the
    shot models, which a long render lets go of to keep its memory flat.
    """
    out: list[BoardPanel] = []
    index = asset_index(project)
    shots_index = project.data.get("shots_index", {})
    for shot in project.storyboard.get("shots", []):
        if not isinstance(shot, dict):
            continue
        shot_id = str(shot.get("shot_id", ""))
        modules = shot.get("prompt_modules")
        modules = modules if isinstance(modules, dict) else {}
        number = shot.get("shot_number")
        entry = shots_index.get(shot_id)
        active = entry.get("active_asset") if isinstance(entry, dict) else None
        record = index.get(str(active)) if active else None
        image = resolve_asset(project, record) if record and record_path_ok(record.path) else None
        out.append(
            BoardPanel(
                shot_id=shot_id,
                shot_number=int(number) if isinstance(number, int | float) else 0,
                title=_text(shot.get("title")) or shot_id,
                description=_text(shot.get("description")),
                camera=_text(modules.get("camera")),
                lighting=_text(modules.get("lighting")),
                record=record,
                image=image,
            )
        )
    return out


def _open_image(source: Path | bytes | None) -> Image.Image | None:
    """The image (a file, or its bytes) shrunk to at most the HTML thumbnail width, RGB; None if
    unusable."""
    if source is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
                opened.draft("RGB", (HTML_THUMB_W * 2, HTML_THUMB_W * 2))
                image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None
    # reducing_gap: a cheap box reduction first, LANCZOS for the last factor of two or less
    image.thumbnail((HTML_THUMB_W, HTML_THUMB_W * 4), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return image


class _Thumbs:
    """One JPEG thumbnail per image content (at most :data:`HTML_THUMB_W` wide), kept in the
    project's thumbnail cache: the page embeds it, the sheet scales its tiles from it."""

    def __init__(self, cache: ThumbCache | None) -> None:
        self.cache = cache
        self.missing: set[str] = set()  # shots whose image is missing or unreadable
        self._keys: dict[str, str | None] = {}

    def key(self, panel: BoardPanel) -> str | None:
        """The cache key of the panel's image content (None without a readable file)."""
        if panel.shot_id in self._keys:
            return self._keys[panel.shot_id]
        key = None
        if panel.image is not None and panel.record is not None:
            try:
                stat = panel.image.stat()
            except OSError:
                pass
            else:
                raw = f"{panel.record.sha256}:{stat.st_size}:{stat.st_mtime_ns}:{HTML_THUMB_W}"
                key = hashlib.sha256(raw.encode()).hexdigest()[:40]
        self._keys[panel.shot_id] = key
        return key

    def jpeg(self, panel: BoardPanel, content: bytes | None = None) -> bytes | None:
        """The panel's JPEG thumbnail: from the cache, else made (and cached) now, from
        ``content`` when the caller has the image's bytes at hand."""
        key = self.key(panel)
        if key is not None and self.cache is not None and content is None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        image = _open_image(content if content is not None else panel.image)
        if image is None:
            self.missing.add(panel.shot_id)
            return None
        data = _jpeg(image)
        if key is not None and self.cache is not None:
            self.cache.put(key, data)
        return data

    def tile(self, panel: BoardPanel, box: tuple[int, int]) -> Image.Image | None:
        """The panel's thumbnail fitted into the sheet's tile ``box``."""
        data = self.jpeg(panel)
        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as opened:
                opened.draft("RGB", box)
                image = opened.convert("RGB")
        except (OSError, ValueError):
            return None
        return ImageOps.contain(image, box, Image.Resampling.BILINEAR)


def thumb_cache(root: Path) -> ThumbCache:
    """The project's thumbnail cache (close it when done)."""
    return ThumbCache(root / THUMB_CACHE)


def cache_thumbnail(
    cache: ThumbCache, root: Path, record: AssetRecord, content: bytes | None = None
) -> None:
    """Make the sheet's thumbnail of a fresh render now, from ``content`` (the bytes just
    written) or the file (the engine calls this as each panel lands, so the end-of-run refresh
    only assembles cached thumbnails)."""
    if not record_path_ok(record.path):
        return
    panel = BoardPanel(
        shot_id=record.shot_id,
        shot_number=0,
        title="",
        description="",
        camera="",
        lighting="",
        record=record,
        image=root / record.path,
    )
    _Thumbs(cache).jpeg(panel, content)


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


def render_board_sheet(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None = None,
    root: Path | None = None,
) -> bytes:
    """The contact sheet as JPEG bytes. ``images`` maps shot ids to already opened images;
    without it each panel's thumbnail is loaded (and cached under ``root``) in turn."""
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(thumb_cache(root)) if root is not None else None
        return _sheet_jpeg(_draw_sheet(panels, title, aspect, images, _Thumbs(cache)), None)


def _sheet_jpeg(sheet: Image.Image, key: str | None) -> bytes:
    """A sheet page as JPEG: photographic tiles, 5x smaller and 15x faster to encode than PNG.
    Captions are light on dark (luma, which JPEG keeps at full resolution), so the usual 4:2:0
    chroma subsampling costs them nothing."""
    buffer = io.BytesIO()
    extra = {"comment": key} if key else {}
    sheet.save(buffer, format="JPEG", quality=88, **extra)
    return buffer.getvalue()


def _draw_sheet(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None,
    thumbs: _Thumbs,
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


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def render_board_html(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None = None,
    root: Path | None = None,
) -> str:
    """The storyboard page: one self-contained HTML document (escaped text, data: images)."""
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(thumb_cache(root)) if root is not None else None
        thumbs = _Thumbs(cache)

        def thumbnail(panel: BoardPanel) -> bytes | None:
            if images is None:
                return thumbs.jpeg(panel)
            image = images.get(panel.shot_id)
            return _jpeg(image) if image is not None else None

        return "".join(html_chunks(panels, title, aspect, thumbnail))


def _project_title(project: Project) -> str:
    for source in (project.data, project.storyboard):
        for key in ("title", "name"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return project.project_id


def _page_key(thumbs: _Thumbs, panels: list[BoardPanel], title: str, aspect: float) -> str:
    """What a sheet page shows, hashed: an unchanged page is not drawn again."""
    shown = [
        [p.shot_id, p.shot_number, p.title, p.placeholder, p.record is not None, thumbs.key(p)]
        for p in panels
    ]
    raw = json.dumps([_SHEET_FORMAT, title, round(aspect, 4), shown], ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def _drawn_key(path: Path) -> str | None:
    """The page key a sheet page was drawn for (kept in its JPEG comment), or None."""
    try:
        with Image.open(path) as opened:
            comment = opened.info.get("comment")
    except (OSError, ValueError):
        return None
    return comment.decode("ascii", "replace") if isinstance(comment, bytes) else None


def write_board(project: Project) -> BoardFiles:
    """Write ``storyboard/board.jpg`` (plus ``board-N.jpg`` for long boards) and
    ``storyboard/board.html`` for ``project``, atomically, one panel at a time.

    A page whose panels, titles and images are unchanged since it was drawn is kept as it is,
    so refreshing a 2000-panel board after re-rendering one panel redraws one page.
    """
    with thumb_cache(project.root) as cache:
        return _write_board(project, _Thumbs(cache))


def _write_board(project: Project, thumbs: _Thumbs) -> BoardFiles:
    panels = board_panels(project)
    aspect = board_aspect(project)
    title = _project_title(project)
    folder = project.root / BOARD_DIR
    pages: list[Path] = []
    canvas: Image.Image | None = None
    for number, start in enumerate(range(0, max(1, len(panels)), SHEET_PAGE), start=1):
        chunk = panels[start : start + SHEET_PAGE]
        path = folder / ("board.jpg" if number == 1 else f"board-{number}.jpg")
        page_title = title if number == 1 else f"{title} ({number})"
        key = _page_key(thumbs, chunk, page_title, aspect)
        if _drawn_key(path) != key:
            if canvas is not None and canvas.size != board_geometry(len(chunk), aspect).size:
                canvas = None  # free the old canvas before the (last, shorter) page's is made
            canvas = _draw_sheet(chunk, page_title, aspect, None, thumbs, canvas)
            atomic_write_bytes(path, _sheet_jpeg(canvas, key))
        else:  # the page is current; its thumbnails still count for the "missing" total
            for panel in chunk:
                if panel.record is not None:
                    thumbs.jpeg(panel)
        pages.append(path)
    for stale in [*folder.glob("board-*.jpg"), *folder.glob("board*.png")]:
        if stale not in pages:  # pages past the end, and PNG sheets of older versions
            stale.unlink(missing_ok=True)
    html_path = folder / "board.html"
    with atomic_writer(html_path) as handle:
        for chunk_text in html_chunks(panels, title, aspect, thumbs.jpeg):
            handle.write(chunk_text.encode("utf-8"))
    missing = sum(1 for p in panels if p.record is not None and p.shot_id in thumbs.missing)
    return BoardFiles(
        sheet=pages[0],
        html=html_path,
        panels=len(panels),
        pages=tuple(pages),
        rendered=sum(1 for p in panels if p.record is not None and not p.placeholder),
        placeholders=sum(1 for p in panels if p.placeholder),
        missing=missing,
    )
