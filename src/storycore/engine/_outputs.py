"""Putting a rendered image into the project: provenance in the PNG, atomic file, sidecar.

The server's image arrives as a file: the engine downloads it into the shot's folder under a
fresh temporary name (:func:`download_name`, one ``storycore assets clean`` knows as StoryCore's
own), hashed and checked by the client on the way. :func:`finish_render` then writes the render
from it, file to file, with StoryCore's provenance chunk spliced in
(:mod:`storycore.engine._provenance`: a PNG is copied chunk by chunk, never decoded; other
formats are converted to PNG), into a ``.<render>.<8 hex>.tmp`` file whose sha256 and size are
taken as it is written, fsynced and renamed into place; the sidecar follows and one folder
fsync covers both. Nothing holds the whole image in memory; the downloaded file is removed
whatever happens.

Every write stays inside the project: the image and its sidecar are written inside ``root``, so
a shot folder (or ``assets``, ...) that is a link leaving the project is refused with an
:class:`~storycore.errors.OutsideProjectError` naming the link, and a link at the file's own
name is replaced, never written through. A folder link that stays inside the project is followed
(a shot kept elsewhere in the project is fine). :func:`check_render_targets` runs the same
checks for a whole run before anything is submitted, so a hostile project stops the run
(exit 3) before a server renders or a byte is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from storycore._fsutil import (
    O_NOFOLLOW,
    atomic_write_bytes,
    ensure_inside,
    fsync_dir,
    json_bytes,
    mkdirs_inside,
    open_inside,
    unlink_inside,
)
from storycore._statefiles import STATE_DIR, check_state_file
from storycore.engine._provenance import (
    PROVENANCE_KEY,
    HashingWriter,
    embed_provenance,
    write_with_provenance,
)
from storycore.errors import StoryCoreError
from storycore.manifest import GENERATED_DIR, AssetRecord

__all__ = [
    "PROVENANCE_KEY",
    "check_render_targets",
    "discard_download",
    "download_name",
    "embed_provenance",
    "finish_render",
    "render_folder",
    "store_render",
]


def download_name(shot_id: str) -> str:
    """A fresh name for a shot's downloaded image, before its provenance is added:
    ``.<shot>.<8 hex>.part``, a partial download for ``storycore assets clean`` (left behind
    only by a crash between the download and the render's rename)."""
    return f".{shot_id}.{secrets.token_hex(4)}.part"


def store_render(root: Path, record: AssetRecord, data: bytes) -> AssetRecord:
    """Write the image bytes ``data`` (durably) and its sidecar atomically; fill in size and
    sha256 (the in-memory form of :func:`finish_render`, for an image made here)."""
    target = root / record.path
    record.size = len(data)
    record.sha256 = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(target, data, sync_folder=False, inside=root)
    _write_sidecar(root, record)
    return record


def finish_render(
    root: Path, record: AssetRecord, source: Path, provenance: dict[str, Any]
) -> AssetRecord:
    """Write the render from the server's image, the downloaded file ``source``, with
    ``provenance`` spliced in; fill in the record's size, sha256 (of the final file), width and
    height; then its sidecar (blocking).

    The image is durable (fsynced, renamed, its folder fsynced) when this returns, so the
    journal's ``done`` may follow. ``source`` is removed whatever happens. A damaged image is
    an :class:`~storycore.errors.AssetError`; a disk that refuses the write, its ``OSError``.
    """
    target = root / record.path
    try:
        with _open_download(source) as src, _render_temp(root, target) as out:
            record.width, record.height = write_with_provenance(src, out, provenance)
            record.size, record.sha256 = out.size, out.digest.hexdigest()
    finally:
        discard_download(root, source)
    _write_sidecar(root, record)
    return record


def discard_download(root: Path, source: Path) -> None:
    """Remove a downloaded file (blocking; quiet when it is gone or its folder now leads out of
    ``root``: nothing outside the project is deleted)."""
    with contextlib.suppress(OSError, StoryCoreError):
        unlink_inside(root, source, what="downloaded image")


def _write_sidecar(root: Path, record: AssetRecord) -> None:
    """The sidecar is a convenience copy of the record for people and tools: the journal's
    ``done`` event carries the same record durably, so the sidecar skips its own fsync, and
    one folder fsync covers its rename and the image's."""
    atomic_write_bytes(
        root / record.sidecar_path,
        json_bytes(record.to_dict()),
        durable=False,
        inside=root,
    )
    fsync_dir((root / record.path).parent)


def _open_download(source: Path) -> BinaryIO:
    """The downloaded file, open for reading (never through a link)."""
    return os.fdopen(os.open(source, os.O_RDONLY | O_NOFOLLOW), "rb")


@contextlib.contextmanager
def _render_temp(root: Path, target: Path) -> Iterator[HashingWriter]:
    """Stream into ``target`` atomically: a new ``.<name>.<8 hex>.tmp`` file beside it (inside
    ``root``, never through a link), fsynced and renamed over ``target`` when the block ends
    without an error, removed when it does not. The folder's fsync is the caller's."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = open_inside(root, temp, flags, 0o666, what="render")
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 clashes of 32 random bits
        raise FileExistsError(f"no free temporary name beside {target}")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield HashingWriter(handle)
            handle.flush()
            os.fsync(handle.fileno())
        ensure_inside(root, target.parent, what="render folder")
        os.replace(temp, target)  # a link at ``target`` is replaced, never written through
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# ----------------------------------------------------------------------------- containment
# StoryCore's own files in ``.storycore`` (see journal.py, diagnostics/_history.py, board.py):
# plain files with one name, never links.
_STATE_FILES = {
    "journal.jsonl": "journal",
    "diagnostics.jsonl": "diagnostics file",
    "cache/thumbs.sqlite": "thumbnail cache",
    "cache/thumbs.sqlite-wal": "thumbnail cache",
    "cache/thumbs.sqlite-shm": "thumbnail cache",
    "cache/thumbs.sqlite-journal": "thumbnail cache",
}


def _no_link_out(root: Path, folder: Path) -> None:
    """Raise for the first link under ``folder`` (not followed) whose target leaves ``root``:
    the metrics, the thumbnail cache and the emulator's output folders all live there, and a
    link anywhere in them (``.storycore/mock-server/output/storycore -> ~``) would carry their
    writes out."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            path = Path(top, name)
            if path.is_symlink():
                ensure_inside(root, path, what=f"{STATE_DIR} folder")


def render_folder(root: Path, shot_id: str) -> Path:
    """The shot's render folder, created inside ``root`` (blocking): the folder a download of
    the shot's image goes into. Raises :class:`~storycore.errors.OutsideProjectError` naming the
    link when the folder, or one on the way to it, is a link that leaves the project."""
    return mkdirs_inside(root, root / GENERATED_DIR / shot_id, what="render folder")


def check_render_targets(root: Path, shot_ids: list[str]) -> None:
    """Refuse a run whose writes a planted link would carry outside ``root`` (blocking; nothing
    is created or written): each shot's render folder, every link under ``.storycore`` (the
    metrics, the thumbnail cache, the emulator's folders) and StoryCore's own files in it (journal,
    diagnostics, cache database), which must be plain files with one name, not links. The
    writers check again as they write; this makes a hostile project stop before any prompt."""
    state = root / STATE_DIR
    ensure_inside(root, state, what="state folder")
    _no_link_out(root, state)
    for name, what in _STATE_FILES.items():
        check_state_file(root, state / name, what=what)
    for shot_id in shot_ids:
        ensure_inside(root, root / GENERATED_DIR / shot_id, what=f"render folder of {shot_id}")
