"""The storyboard sheet: a contact-sheet PNG and a self-contained HTML page of every panel.

``write_board(project)`` writes, atomically::

    <project>/storyboard/board.png   a grid of every panel's active image (or a grey "not
                                     rendered" tile), shot number and title under each,
                                     a PLACEHOLDER badge on placeholder frames
    <project>/storyboard/board.html  one page, no external requests: images embedded as data:
                                     URIs of downscaled JPEGs; shot number, title, description,
                                     camera and lighting notes, seed, render time, badge

Panels follow the storyboard's order. The page carries a Content-Security-Policy that allows
nothing but inline styles and ``data:`` images, so a browser opening it fetches nothing.

Boards of any size cost the same memory: thumbnails are made once per image content and cached
in ``.storycore/cache/thumbs`` (a temporary folder ``storycore assets clean`` may empty), panels
are drawn and written one at a time, and a board of more than :data:`SHEET_PAGE` panels gets
further sheets ``board-2.png``, ``board-3.png``...
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import html
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from storycore._fsutil import atomic_write_bytes, atomic_writer
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
    "render_board_png",
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
THUMB_CACHE = Path(".storycore") / "cache" / "thumbs"

_BG = (30, 30, 32)
_TILE = (52, 52, 56)
_EMPTY = (96, 96, 100)
_TEXT = (236, 236, 236)
_MUTED = (170, 170, 176)
_BADGE = (230, 126, 34)


@dataclass(frozen=True)
class BoardFiles:
    """Where the sheet was written, and what it shows."""

    png: Path
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


def board_panels(project: Project) -> list[BoardPanel]:
    """Every shot of the storyboard with its active render (if any), in storyboard order."""
    out: list[BoardPanel] = []
    index = asset_index(project)
    shots_index = project.data.get("shots_index", {})
    for shot in project.shots:
        entry = shots_index.get(shot.shot_id)
        active = entry.get("active_asset") if isinstance(entry, dict) else None
        record = index.get(str(active)) if active else None
        image = resolve_asset(project, record) if record and record_path_ok(record.path) else None
        out.append(
            BoardPanel(
                shot_id=shot.shot_id,
                shot_number=shot.shot_number,
                title=shot.title or shot.shot_id,
                description=shot.description,
                camera=shot.prompt_modules.camera,
                lighting=shot.prompt_modules.lighting,
                record=record,
                image=image,
            )
        )
    return out


def _open_image(path: Path | None) -> Image.Image | None:
    """The image at ``path`` shrunk to at most the HTML thumbnail width, RGB; None if unusable."""
    if path is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.draft("RGB", (HTML_THUMB_W * 2, HTML_THUMB_W * 2))
                image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None
    image.thumbnail((HTML_THUMB_W, HTML_THUMB_W * 4), Image.Resampling.LANCZOS)
    return image


class _Thumbs:
    """Thumbnails made once per image content and kept in the project's cache folder."""

    def __init__(self, root: Path | None) -> None:
        self.folder = root / THUMB_CACHE if root is not None else None
        self.unusable: set[str] = set()  # shots whose image is missing or unreadable

    def _key(self, panel: BoardPanel) -> str | None:
        if panel.image is None or panel.record is None or self.folder is None:
            return None
        try:
            stat = panel.image.stat()
        except OSError:
            return None
        raw = f"{panel.record.sha256}:{stat.st_size}:{stat.st_mtime_ns}:{HTML_THUMB_W}"
        return hashlib.sha256(raw.encode()).hexdigest()[:40]

    def _path(self, key: str | None, suffix: str) -> Path | None:
        return self.folder / f"{key}{suffix}" if key and self.folder is not None else None

    def _store(self, path: Path | None, data: bytes) -> None:
        if path is not None:
            with contextlib.suppress(OSError):  # the cache is an optimisation only
                atomic_write_bytes(path, data, durable=False)

    def _make(
        self, panel: BoardPanel, key: str | None, box: tuple[int, int] | None
    ) -> tuple[bytes, Image.Image | None] | None:
        """Decode the render once; cache the page's JPEG and, with ``box``, the sheet tile."""
        image = _open_image(panel.image)
        if image is None:
            self.unusable.add(panel.shot_id)
            return None
        jpeg = _jpeg(image)
        self._store(self._path(key, ".jpg"), jpeg)
        tile = None
        if box is not None:
            tile = ImageOps.contain(image, box, Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            tile.save(buffer, format="PNG", compress_level=1)
            self._store(self._path(key, f"-{box[0]}x{box[1]}.png"), buffer.getvalue())
        return jpeg, tile

    def tile(self, panel: BoardPanel, box: tuple[int, int]) -> Image.Image | None:
        """The panel's thumbnail fitted into the sheet's tile ``box`` (cached once made)."""
        key = self._key(panel)
        cached = self._path(key, f"-{box[0]}x{box[1]}.png")
        if cached is not None:
            try:
                with Image.open(cached) as opened:
                    return opened.convert("RGB")
            except (OSError, ValueError):
                pass
        made = self._make(panel, key, box)
        return None if made is None else made[1]

    def jpeg(self, panel: BoardPanel) -> bytes | None:
        """The page's JPEG thumbnail (cached once made)."""
        key = self._key(panel)
        cached = self._path(key, ".jpg")
        if cached is not None:
            with contextlib.suppress(OSError):
                return cached.read_bytes()
        made = self._make(panel, key, None)
        return None if made is None else made[0]


def cache_thumbnail(root: Path, record: AssetRecord, aspect: float = 16 / 9) -> None:
    """Make the sheet's thumbnails of a fresh render now (the engine calls this as each panel
    lands, so the end-of-run refresh only assembles cached thumbnails)."""
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
    _Thumbs(root).tile(panel, board_geometry(1, aspect).thumb)


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


def render_board_png(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None = None,
    root: Path | None = None,
) -> bytes:
    """The contact sheet as PNG bytes. ``images`` maps shot ids to already opened images;
    without it each panel's thumbnail is loaded (and cached under ``root``) in turn."""
    thumbs = _Thumbs(root)
    geo = board_geometry(len(panels), aspect)
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
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


_CSS = """
body{margin:0;background:#1e1e20;color:#ececec;font:15px/1.4 system-ui,sans-serif}
header{padding:20px 24px 8px}h1{margin:0 0 4px;font-size:24px}header p{margin:0;color:#aaa}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px;
padding:16px 24px}
.panel{background:#343438;border-radius:6px;overflow:hidden}
figure{margin:0;position:relative;background:#606064;aspect-ratio:var(--ar)}
figure img{display:block;width:100%;height:100%;object-fit:contain;background:#111}
.empty{display:flex;align-items:center;justify-content:center;height:100%;color:#eee}
.badge{position:absolute;top:8px;left:8px;background:#e67e22;color:#141414;font-weight:700;
font-size:12px;padding:2px 6px;border-radius:3px}
.body{padding:10px 12px}h2{margin:0 0 6px;font-size:17px}.num{color:#e67e22;margin-right:6px}
.desc{margin:0 0 8px;color:#ddd}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;
margin:0;font-size:13px}dt{color:#aaa}dd{margin:0}
"""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


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
    return "".join(_html_chunks(panels, title, aspect, images, _Thumbs(root)))


def _html_chunks(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None,
    thumbs: _Thumbs,
) -> Iterator[str]:
    esc = html.escape
    rendered = sum(1 for p in panels if p.record is not None and not p.placeholder)
    placeholders = sum(1 for p in panels if p.placeholder)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} — storyboard</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>{_count(len(panels), 'panel')} · {rendered} rendered"
        f" · {_count(placeholders, 'placeholder')}</p></header>",
        f'<main style="--ar:{aspect:.4f}">',
    ]
    yield "\n".join(parts) + "\n"
    for panel in panels:
        if images is not None:
            image = images.get(panel.shot_id)
            jpeg = _jpeg(image) if image is not None else None
        else:
            jpeg = thumbs.jpeg(panel)
        if jpeg is not None:
            figure = (
                f'<img src="{_data_uri(jpeg)}" '
                f'alt="{esc(f"Shot {panel.shot_number}: {panel.title}")}">'
            )
        else:
            label = "file missing" if panel.record is not None else "not rendered"
            figure = f'<div class="empty">{label}</div>'
        badge = '<span class="badge">PLACEHOLDER</span>' if panel.placeholder else ""
        seed = "—" if panel.seed is None else str(panel.seed)
        when = esc(panel.record.created_at) if panel.record else "—"
        status = "placeholder" if panel.placeholder else ("rendered" if panel.record else "pending")
        yield (
            f'<article class="panel" id="{esc(panel.shot_id)}"><figure>{figure}{badge}</figure>'
            f'<div class="body"><h2><span class="num">#{panel.shot_number}</span>'
            f"{esc(panel.title)}</h2>"
            f'<p class="desc">{esc(panel.description)}</p><dl>'
            f"<dt>Shot</dt><dd>{esc(panel.shot_id)}</dd>"
            f"<dt>Camera</dt><dd>{esc(panel.camera) or '—'}</dd>"
            f"<dt>Lighting</dt><dd>{esc(panel.lighting) or '—'}</dd>"
            f"<dt>Seed</dt><dd>{seed}</dd>"
            f"<dt>Render time</dt><dd>{_fmt_seconds(panel.render_seconds)}</dd>"
            f"<dt>Rendered at</dt><dd>{when}</dd>"
            f"<dt>Status</dt><dd>{status}</dd></dl></div></article>\n"
        )
    yield "</main></body></html>\n"


def _project_title(project: Project) -> str:
    for source in (project.data, project.storyboard):
        for key in ("title", "name"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return project.project_id


def write_board(project: Project) -> BoardFiles:
    """Write ``storyboard/board.png`` (plus ``board-N.png`` for long boards) and
    ``storyboard/board.html`` for ``project``, atomically, one panel at a time."""
    panels = board_panels(project)
    thumbs = _Thumbs(project.root)
    aspect = board_aspect(project)
    title = _project_title(project)
    folder = project.root / BOARD_DIR
    pages: list[Path] = []
    for number, start in enumerate(range(0, max(1, len(panels)), SHEET_PAGE), start=1):
        chunk = panels[start : start + SHEET_PAGE]
        name = "board.png" if number == 1 else f"board-{number}.png"
        page_title = title if number == 1 else f"{title} ({number})"
        atomic_write_bytes(
            folder / name, render_board_png(chunk, page_title, aspect, None, project.root)
        )
        pages.append(folder / name)
    for stale in folder.glob("board-*.png"):
        if stale not in pages:
            stale.unlink(missing_ok=True)
    html_path = folder / "board.html"
    with atomic_writer(html_path) as handle:
        for chunk_text in _html_chunks(panels, title, aspect, None, thumbs):
            handle.write(chunk_text.encode("utf-8"))
    missing = sum(1 for p in panels if p.record is not None and thumbs.jpeg(p) is None)
    return BoardFiles(
        png=pages[0],
        html=html_path,
        panels=len(panels),
        pages=tuple(pages),
        rendered=sum(1 for p in panels if p.record is not None and not p.placeholder),
        placeholders=sum(1 for p in panels if p.placeholder),
        missing=missing,
    )
