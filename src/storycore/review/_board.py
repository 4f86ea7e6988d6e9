"""The storyboard sheet: a contact-sheet JPEG and an HTML review page of every panel.

``write_board(project)`` writes, atomically::

    <project>/storyboard/board.jpg   a grid of every panel's active image (or a grey "not
                                     rendered" tile), shot number and title under each,
                                     a PLACEHOLDER badge on placeholder frames
    <project>/storyboard/board.html  one page: per panel a downscaled JPEG (a data: URI) that
                                     links to the full-size image in the project, the prompts,
                                     seed, sampler settings, size, models, render number,
                                     take/profile, execution time and local timestamps

Panels follow the storyboard's order. What a panel shows comes from what was rendered (the
manifest record and the image's own text chunks, see :mod:`storycore.review._render_details`); where
the storyboard asks for something else today, the page says so beside the rendered value. The
page carries a Content-Security-Policy that allows nothing but inline styles and ``data:``
images: a browser opening it loads nothing else, and runs no script; the links to the
full-size images are plain navigations.

What the board writes and deletes (a project is received from others, so it proves both):

- it writes only into the project: ``storyboard/`` (and the thumbnail cache under
  ``.storycore/cache``) must be real folders inside it, or reached through links that stay
  inside it; a link that leads out is refused with
  :class:`~storycore.errors.OutsideProjectError` (exit 3) naming the link, before anything is
  written. Each file is written atomically beside its target (a link at the target itself is
  replaced, never written through); a cache file that is a link is never opened.
- it deletes only the pages it wrote and can prove it wrote: each refresh records the pages it
  wrote, name and sha256, in ``storyboard/.storycore-pages.json``; a page of an earlier refresh
  that the board no longer needs (the board got shorter) is removed only when it is listed
  there, is named like a page (``board-N.jpg``), is a plain file (not a link), and still holds
  exactly the bytes recorded. Everything else in ``storyboard/`` is the user's and stays:
  ``board_sketch.png``, ``board-final.jpg``, a page the user replaced with their own picture,
  the PNG sheets of versions older than the record (:mod:`storycore.review._board_pages`).
- it reads a render only when the record's path stays in the generated-images folder and the
  file's real path stays in the project: the page never embeds an image from elsewhere.

Boards of any size cost the same memory: thumbnails and render details are made once per image
content and cached in ``.storycore/cache/thumbs.sqlite`` (which ``storycore assets clean`` may
delete), panels are drawn and written one at a time, and a board of more than
:data:`SHEET_PAGE` panels gets further sheets ``board-2.jpg``, ``board-3.jpg``... Each page
remembers (in its JPEG comment) a key of what it shows; a refresh redraws only the pages whose
panels changed.

A board that cannot be written (a read-only project, a file named ``storyboard`` where the
folder should be, a full disk) raises :class:`~storycore.errors.ProjectError` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from storycore._fsutil import atomic_write_bytes, atomic_writer, mkdirs_inside
from storycore.assets import read_record, record_path_ok
from storycore.errors import ProjectError
from storycore.manifest import MANIFEST_KEY, AssetRecord, resolve_asset
from storycore.review._board_html import html_chunks
from storycore.review._board_pages import (
    PAGES_RECORD,
    drawn_key,
    forget_stale_pages,
    plain_file_sha256,
)
from storycore.review._board_sheet import (
    CAPTION_H,
    GAP,
    HEADER_H,
    MAX_COLUMNS,
    THUMB_W,
    BoardGeometry,
    board_geometry,
    draw_sheet,
    sheet_jpeg,
)
from storycore.review._render_details import Planned, RenderDetails, changes, planned
from storycore.review._thumbcache import HTML_THUMB_W, ThumbCache, Thumbnails, jpeg_bytes

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "BOARD_DIR",
    "CAPTION_H",
    "GAP",
    "HEADER_H",
    "HTML_THUMB_W",
    "MAX_COLUMNS",
    "PAGES_RECORD",
    "SHEET_PAGE",
    "THUMB_W",
    "BoardFiles",
    "BoardGeometry",
    "BoardPanel",
    "PanelFacts",
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
SHEET_PAGE = 96
THUMB_CACHE = Path(".storycore") / "cache"
_SHEET_FORMAT = 2  # bump when the drawing changes: every page is drawn again


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


@dataclass(frozen=True, eq=False)
class BoardPanel:
    """One panel as the sheet shows it. ``image`` is the active file, when there is one;
    ``entry`` is its manifest entry as stored (fields the record type does not know yet, such
    as ``take`` or ``profile``, are read from there); ``shot`` the storyboard's JSON."""

    shot_id: str
    shot_number: int
    title: str
    description: str
    camera: str
    lighting: str
    record: AssetRecord | None
    image: Path | None
    entry: dict[str, Any] | None = None
    shot: dict[str, Any] | None = None
    comment: str = ""  # the review comment (shots_index.<shot>.x_review.comment)

    @property
    def placeholder(self) -> bool:
        return self.record is not None and self.record.placeholder

    @property
    def seed(self) -> int | None:
        return self.record.seed if self.record else None


@dataclass(frozen=True)
class PanelFacts:
    """What the page says about one panel: what was rendered (None: not rendered), what the
    storyboard asks for now, and where they differ (label -> the storyboard's value)."""

    details: RenderDetails | None
    planned: Planned | None
    changed: dict[str, str]


def board_aspect(project: Project) -> float:
    """Width / height of a panel, from the project's target aspect ratio (16:9 by default)."""
    raw = project.data.get("config", {}).get("target_aspect_ratio") or "16:9"
    try:
        left, _, right = str(raw).partition(":")
        ratio = float(left) / float(right)
    except (ValueError, ZeroDivisionError):
        ratio = 16 / 9
    return min(4.0, max(0.25, ratio)) if math.isfinite(ratio) else 16 / 9


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _manifest_entries(project: Project) -> dict[str, dict[str, Any]]:
    """Every manifest entry by ``asset_id``: the stored dicts themselves, not copies."""
    manifest = project.data.get("asset_manifest")
    items = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
    return {
        str(item["asset_id"]): item
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and "asset_id" in item
    }


def _image_path(project: Project, record: AssetRecord) -> Path | None:
    """The record's file when its path stays in the generated-images folder and its real path
    (links followed) stays in the project: the page never embeds an image from elsewhere."""
    if not record_path_ok(record.path):
        return None
    path = resolve_asset(project, record)
    real, real_root = os.path.realpath(path), os.path.realpath(project.root)
    return path if real.startswith(real_root.rstrip(os.sep) + os.sep) else None


def _comment(index_entry: Any) -> str:
    review = index_entry.get("x_review") if isinstance(index_entry, dict) else None
    comment = review.get("comment") if isinstance(review, dict) else None
    return comment[:10_000] if isinstance(comment, str) else ""


def board_panels(project: Project) -> list[BoardPanel]:
    """Every shot of the storyboard with its active render (if any), in storyboard order.

    Read from the storyboard's JSON (validated when the project was loaded), not from the
    shot models, which a long render lets go of to keep its memory flat. A manifest entry that
    cannot be read as a record (edited by hand, a field of the wrong type: see
    :func:`~storycore.assets._records.read_record`) shows as not rendered.
    """
    out: list[BoardPanel] = []
    entries = _manifest_entries(project)
    shots_index = project.data.get("shots_index", {})
    for shot in project.storyboard.get("shots", []):
        if not isinstance(shot, dict):
            continue
        shot_id = str(shot.get("shot_id", ""))
        modules = shot.get("prompt_modules")
        modules = modules if isinstance(modules, dict) else {}
        number = shot.get("shot_number")
        index_entry = shots_index.get(shot_id)
        active = index_entry.get("active_asset") if isinstance(index_entry, dict) else None
        entry = entries.get(str(active)) if active else None
        record = read_record(entry)[0] if entry is not None else None
        image = _image_path(project, record) if record is not None else None
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
                entry=entry if record is not None else None,
                shot=shot,
                comment=_comment(index_entry),
            )
        )
    return out


def thumb_cache(root: Path) -> ThumbCache:
    """The project's thumbnail cache (close it when done); it never opens a file through a
    link that leaves ``root``, nor a cache file that is itself a link."""
    return ThumbCache(root / THUMB_CACHE, inside=root)


def cache_thumbnail(
    cache: ThumbCache, root: Path, record: AssetRecord, content: bytes | None = None
) -> None:
    """Make the sheet's thumbnail and the page's render details of a fresh render now, from
    ``content`` (the bytes just written) or the file (the engine calls this as each panel
    lands, so the end-of-run refresh only assembles what is cached)."""
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
    thumbs = Thumbnails(cache)
    thumbs.jpeg(panel, content)
    thumbs.details(panel, content)


def panel_facts(
    panel: BoardPanel, thumbs: Thumbnails | None, anchors: dict[str, Any]
) -> PanelFacts:
    """What the page shows of ``panel`` beyond its storyboard text."""
    record = panel.record
    details = None
    if record is not None:
        details = thumbs.details(panel) if thumbs is not None else Thumbnails(None).details(panel)
    plan = planned(panel.shot, anchors) if panel.shot is not None else None
    changed: dict[str, str] = {}
    if details is not None and plan is not None and record is not None:
        checkpoint = next((m.name for m in details.models if m.kind == "Checkpoint"), None)
        changed = changes(
            details,
            plan,
            version=record.version,
            checkpoint=checkpoint or record.checkpoint,
            own_graph=record.template is None,
        )
    return PanelFacts(details, plan, changed)


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
        return sheet_jpeg(draw_sheet(panels, title, aspect, images, Thumbnails(cache)), None)


def render_board_html(
    panels: list[BoardPanel],
    title: str,
    aspect: float,
    images: dict[str, Image.Image | None] | None = None,
    root: Path | None = None,
    anchors: dict[str, Any] | None = None,
) -> str:
    """The storyboard page as one string (escaped text, data: thumbnails, relative links to the
    full-size images). ``images`` maps shot ids to already opened images; without it each
    thumbnail is loaded (and cached under ``root``)."""
    with contextlib.ExitStack() as stack:
        cache = stack.enter_context(thumb_cache(root)) if root is not None else None
        thumbs = Thumbnails(cache)

        def thumbnail(panel: BoardPanel) -> bytes | None:
            if images is None:
                return thumbs.jpeg(panel)
            image = images.get(panel.shot_id)
            return jpeg_bytes(image) if image is not None else None

        return "".join(
            html_chunks(
                panels,
                title,
                aspect,
                thumbnail,
                lambda panel: panel_facts(panel, thumbs, anchors or {}),
                written_at=datetime.now().astimezone(),
            )
        )


def _project_title(project: Project) -> str:
    for source in (project.data, project.storyboard):
        for key in ("title", "name"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return project.project_id


def _page_key(thumbs: Thumbnails, panels: list[BoardPanel], title: str, aspect: float) -> str:
    """What a sheet page shows, hashed: an unchanged page is not drawn again."""
    shown = [
        [p.shot_id, p.shot_number, p.title, p.placeholder, p.record is not None, thumbs.key(p)]
        for p in panels
    ]
    raw = json.dumps([_SHEET_FORMAT, title, round(aspect, 4), shown], ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def write_board(project: Project) -> BoardFiles:
    """Write ``storyboard/board.jpg`` (plus ``board-N.jpg`` for long boards) and
    ``storyboard/board.html`` for ``project``, atomically, one panel at a time.

    A page whose panels, titles and images are unchanged since it was drawn is kept as it is,
    so refreshing a 2000-panel board after re-rendering one panel redraws one page. Raises
    :class:`ProjectError` (naming the path and what to do) when the files cannot be written,
    :class:`~storycore.errors.OutsideProjectError` (a ProjectError) naming the link when the
    board folder or the thumbnail cache is reached through a link that leaves the project.
    """
    folder = project.root / BOARD_DIR
    try:
        mkdirs_inside(project.root, folder, what="storyboard folder")
        with thumb_cache(project.root) as cache:
            cache.check()
            return _write_board(project, Thumbnails(cache))
    except OSError as exc:
        raise _unwritable(folder, exc) from None


def _unwritable(folder: Path, exc: OSError) -> ProjectError:
    """The one-paragraph error for a board that could not be written: the path (the folder,
    not the temporary file an atomic write was making there) and what to do."""
    failed = Path(exc.filename) if exc.filename else folder
    if failed.name.startswith(".") and failed.name.endswith(".tmp"):
        failed = failed.parent
    reason = exc.strerror or str(exc)
    if folder.exists() and not folder.is_dir():
        return ProjectError(
            f"cannot write the storyboard sheet: '{folder.name}' is a file, not a folder",
            where=str(folder),
            hint="Move or rename that file (StoryCore writes board.jpg and board.html into a "
            f"'{folder.name}' folder there), then run `storycore board` again",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = (
            f"Make it writable (for example `chmod u+w {failed}`) or copy the project to a "
            "folder you can write to, then run `storycore board` again"
        )
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        hint = "Free some disk space, then run `storycore board` again"
    else:
        hint = "Check that the project folder can be written, then run `storycore board` again"
    return ProjectError(
        f"cannot write the storyboard sheet ({reason})", where=str(failed), hint=hint
    )


def _write_board(project: Project, thumbs: Thumbnails) -> BoardFiles:
    panels = board_panels(project)
    aspect = board_aspect(project)
    title = _project_title(project)
    folder = project.root / BOARD_DIR
    pages: list[Path] = []
    written: dict[str, str] = {}  # page name -> sha256 of what is on disk now
    canvas: Image.Image | None = None
    for number, start in enumerate(range(0, max(1, len(panels)), SHEET_PAGE), start=1):
        chunk = panels[start : start + SHEET_PAGE]
        path = folder / ("board.jpg" if number == 1 else f"board-{number}.jpg")
        page_title = title if number == 1 else f"{title} ({number})"
        key = _page_key(thumbs, chunk, page_title, aspect)
        if drawn_key(path) != key:
            if canvas is not None and canvas.size != board_geometry(len(chunk), aspect).size:
                canvas = None  # free the old canvas before the (last, shorter) page's is made
            canvas = draw_sheet(chunk, page_title, aspect, None, thumbs, canvas)
            data = sheet_jpeg(canvas, key)
            atomic_write_bytes(path, data, inside=project.root)
            written[path.name] = hashlib.sha256(data).hexdigest()
        else:  # the page is current; its thumbnails still count for the "missing" total
            for panel in chunk:
                if panel.record is not None:
                    thumbs.jpeg(panel)
            digest = plain_file_sha256(path)
            if digest is not None:
                written[path.name] = digest
        pages.append(path)
    forget_stale_pages(project.root, folder, {p.name for p in pages}, written)
    html_path = folder / "board.html"
    with atomic_writer(html_path, inside=project.root) as handle:
        anchors = project.coherence_anchors
        for chunk_text in html_chunks(
            panels,
            title,
            aspect,
            thumbs.jpeg,
            lambda panel: panel_facts(panel, thumbs, anchors),
            written_at=datetime.now().astimezone(),
        ):
            handle.write(chunk_text.encode("utf-8", "replace"))
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
