"""The storyboard's thumbnail cache: JPEG thumbnails keyed by image content, in one SQLite file.

It also keeps, per image content, what the render was made with (:class:`RenderDetails`, read
from the image's text chunks), so a refresh of a long board reads neither pixels nor chunks.

One database instead of one file per thumbnail: on the file systems we measured, creating a file
costs more CPU than decoding and shrinking a small render, and a 2000-panel board would leave
2000 files behind. SQLite gives atomic inserts, safe concurrent readers and writers (threads and
processes) and survives a crash mid-write; the cache skips fsyncs (``synchronous=OFF``): a
thumbnail lost in a power cut is made again.

It is an optimisation only: every error (a locked, damaged or unwritable database) reads as a
miss, and a damaged file is replaced. ``storycore assets clean`` may delete it at any time.

A project is received from others, and SQLite follows links: with ``inside`` (the project
folder) the cache opens nothing when its folder is reached through a link that leaves the
project, or when the database or one of its companions (``-wal``, ``-shm``, ``-journal``) is a
link; :meth:`ThumbCache.check` says so as an
:class:`~storycore.errors.OutsideProjectError` naming the link, and the cache reads as empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
import stat
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from storycore._fsutil import ensure_inside, mkdirs_inside
from storycore.errors import OutsideProjectError
from storycore.review._render_details import (
    DETAILS_FORMAT,
    RenderDetails,
    open_regular,
    read_png_texts,
    render_details,
)

if TYPE_CHECKING:
    from storycore.review._board import BoardPanel

__all__ = ["HTML_THUMB_W", "ThumbCache", "Thumbnails", "jpeg_bytes"]

_FILE = "thumbs.sqlite"
_COMPANIONS = ("", "-wal", "-shm", "-journal")  # the database and the files SQLite adds
HTML_THUMB_W = 480


class ThumbCache:
    """``get``/``put`` JPEG bytes by key; thread-safe; lazily opened; ``close`` when done.
    ``inside``: the project folder the cache must stay in (see the module's docstring)."""

    def __init__(self, folder: Path, *, inside: Path | None = None) -> None:
        self.path = folder / _FILE
        self.inside = inside
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    def check(self) -> None:
        """Raise :class:`OutsideProjectError` naming the link when the cache's folder leads
        out of ``inside`` or one of its files is a link (nothing to check without ``inside``)."""
        if self.inside is None:
            return
        ensure_inside(self.inside, self.path.parent, what="thumbnail cache")
        for suffix in _COMPANIONS:
            path = Path(f"{self.path}{suffix}")
            if path.is_symlink():
                raise OutsideProjectError(
                    f"the thumbnail cache file is a link ({path} -> {os.readlink(path)}); "
                    "StoryCore opens its own files only as plain files, never through a link",
                    where=str(path),
                    hint="Remove the link (the cache is made again), then run again",
                )

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        for attempt in range(2):
            try:
                self.check()
                if self.inside is not None:
                    mkdirs_inside(self.inside, self.path.parent, what="thumbnail cache")
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=5.0, check_same_thread=False, isolation_level=None
                )
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=OFF")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS thumbs (key TEXT PRIMARY KEY, jpeg BLOB)"
                    )
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS details (key TEXT PRIMARY KEY, json TEXT)"
                    )
                except sqlite3.Error:
                    conn.close()
                    raise
            except sqlite3.DatabaseError:
                if attempt == 0:  # not a database (damaged): start a new cache
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(OSError):
                            Path(f"{self.path}{suffix}").unlink()
                    continue
                self._broken = True
                return None
            except (sqlite3.Error, OSError, OutsideProjectError):
                self._broken = True
                return None
            self._conn = conn
            return conn
        return None  # pragma: no cover - the loop always returns

    def get(self, key: str) -> bytes | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT jpeg FROM thumbs WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def put(self, key: str, jpeg: bytes) -> None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                conn.execute("INSERT OR REPLACE INTO thumbs (key, jpeg) VALUES (?, ?)", (key, jpeg))

    def get_details(self, key: str) -> str | None:
        """The details text kept for ``key`` (None on a miss or any error)."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT json FROM details WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        return str(row[0]) if row is not None and row[0] is not None else None

    def put_details(self, key: str, text: str) -> None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                conn.execute(
                    "INSERT OR REPLACE INTO details (key, json) VALUES (?, ?)", (key, text)
                )

    def __len__(self) -> int:
        """How many thumbnails the cache holds."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            try:
                return int(conn.execute("SELECT COUNT(*) FROM thumbs").fetchone()[0])
            except sqlite3.Error:
                return 0

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def __enter__(self) -> ThumbCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def jpeg_bytes(image: Image.Image) -> bytes:
    """``image`` as a thumbnail JPEG."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def _open_image(source: Path | bytes | None) -> Image.Image | None:
    """The image (a file, or its bytes) shrunk to at most the HTML thumbnail width, RGB; None if
    unusable."""
    if source is None:
        return None
    handle = io.BytesIO(source) if isinstance(source, bytes) else open_regular(source)
    if handle is None:
        return None
    try:
        with warnings.catch_warnings(), handle:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as opened:
                opened.draft("RGB", (HTML_THUMB_W * 2, HTML_THUMB_W * 2))
                if opened.mode in _SHRINK_FIRST:  # decoded once, shrunk, then converted
                    _shrink(opened)
                    return opened.convert("RGB")
                image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None
    _shrink(image)
    return image


# Modes Pillow shrinks in place, whose thumbnail converted to RGB is the RGB image's thumbnail:
# shrinking first keeps one full-size copy of the pixels instead of two (an RGB image's convert
# is a copy). Others (alpha, which Pillow premultiplies into a copy of its own; palettes, which
# it would shrink by nearest neighbour) are converted first, as before.
_SHRINK_FIRST = frozenset({"RGB", "L"})


def _shrink(image: Image.Image) -> None:
    # reducing_gap: a cheap box reduction first, LANCZOS for the last factor of two or less
    image.thumbnail((HTML_THUMB_W, HTML_THUMB_W * 4), Image.Resampling.LANCZOS, reducing_gap=2.0)


class Thumbnails:
    """Per image content: one JPEG thumbnail (at most :data:`HTML_THUMB_W` wide; the page
    embeds it, the sheet scales its tiles from it) and the render's details, both kept in the
    project's :class:`ThumbCache` (or made each time without one)."""

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
                info = panel.image.stat()
            except (OSError, ValueError):  # ValueError: a name the file system cannot hold
                pass
            else:
                if stat.S_ISREG(info.st_mode):
                    raw = f"{panel.record.sha256}:{info.st_size}:{info.st_mtime_ns}:{HTML_THUMB_W}"
                    key = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:40]
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
        data = jpeg_bytes(image)
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

    def details(self, panel: BoardPanel, content: bytes | None = None) -> RenderDetails | None:
        """What the panel's render was made with: from the cache, else read from the image's
        text chunks (``content``, or the file) and cached. None for a panel not rendered."""
        record = panel.record
        if record is None:
            return None
        key = self.key(panel)
        key = f"d{DETAILS_FORMAT}:{key}" if key is not None else None
        if key is not None and self.cache is not None and content is None:
            cached = self.cache.get_details(key)
            found = RenderDetails.from_json(cached) if cached is not None else None
            if found is not None:
                return found
        source = content if content is not None else panel.image
        details = render_details(
            read_png_texts(source) if source is not None else {},
            seed=record.seed,
            size=(record.width, record.height),
            checkpoint=record.checkpoint,
            models=record.models,
        )
        if key is not None and self.cache is not None:
            self.cache.put_details(key, details.to_json())
        return details
