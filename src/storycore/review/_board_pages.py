"""The board's own files in ``storyboard/``: which pages it wrote, and removing the stale ones.

A project is received from others and shared with people who keep their own files beside the
board, so the board deletes only what it can prove it wrote. Each refresh records the pages it
wrote, name and sha256, in ``storyboard/.storycore-pages.json``. A page of an earlier refresh
that the board no longer needs (the board got shorter) is removed only when

- it is listed in that record, under a page's name (``board.jpg``, ``board-N.jpg``),
- it is a plain file (not a link), and
- it still holds exactly the bytes recorded (a page the user replaced is theirs now).

Everything else in ``storyboard/`` stays: ``board_sketch.png``, ``board-final.jpg``, the PNG
sheets of versions older than the record. A missing, damaged or oversized record (read without
following a link) reads as empty: nothing is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path

from PIL import Image

from storycore._fsutil import O_NOFOLLOW, atomic_write_json, unlink_inside

__all__ = ["PAGES_RECORD", "drawn_key", "forget_stale_pages", "plain_file_sha256", "read_pages"]

PAGES_RECORD = ".storycore-pages.json"  # the pages the board wrote: name -> sha256
_PAGE_NAME = re.compile(r"^board(-[1-9][0-9]{0,5})?\.jpg$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECORD_MAX = 1 << 20  # a pages record larger than this is not read (a hostile file)
# never through a link; a FIFO planted under a page's name must not block the open
_READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


def drawn_key(path: Path) -> str | None:
    """The page key a sheet page was drawn for (kept in its JPEG comment), or None (also for
    a link: a page is a plain file, and a link there is replaced by one)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # a link, a FIFO (would block), a folder
            return None
        with Image.open(path) as opened:
            comment = opened.info.get("comment")
    except (OSError, ValueError):
        return None
    return comment.decode("ascii", "replace") if isinstance(comment, bytes) else None


def plain_file_sha256(path: Path) -> str | None:
    """The sha256 of ``path`` when it is a plain file (never through a link), else None."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or path.is_symlink():
            return None
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_pages(folder: Path) -> dict[str, str]:
    """The pages an earlier refresh wrote in ``folder``: page name -> sha256. Only names of
    pages and well-formed digests are kept; a missing, damaged, oversized or linked record
    reads as empty (so nothing is deleted)."""
    try:
        fd = os.open(folder / PAGES_RECORD, _READ_FLAGS)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        raw = handle.read(_RECORD_MAX + 1)
    if len(raw) > _RECORD_MAX:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    pages = data.get("pages") if isinstance(data, dict) else None
    if not isinstance(pages, dict):
        return {}
    return {
        name: digest
        for name, digest in pages.items()
        if isinstance(name, str)
        and _PAGE_NAME.match(name)
        and isinstance(digest, str)
        and _SHA256.match(digest)
    }


def forget_stale_pages(
    root: Path, folder: Path, current: Collection[str], written: dict[str, str]
) -> None:
    """Delete the pages an earlier refresh wrote that this one no longer needs, when they still
    hold the recorded bytes; then record the pages written now (plus any stale page that could
    not be deleted, so a later refresh tries again)."""
    keep = dict(written)
    for name, digest in read_pages(folder).items():
        if name in current:
            continue
        path = folder / name
        if plain_file_sha256(path) != digest:
            continue  # gone, replaced by the user, or a link: not (any longer) ours
        try:
            unlink_inside(root, path, what="storyboard page")
        except OSError:
            keep[name] = digest
    atomic_write_json(folder / PAGES_RECORD, {"format": 1, "pages": keep}, inside=root)
