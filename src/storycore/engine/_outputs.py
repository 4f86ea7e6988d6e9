"""Putting a rendered image into the project: provenance in the PNG, atomic file, sidecar.

A PNG from the server is never decoded and re-encoded here: its chunks are checked (structure
and CRCs, which catch a damaged transfer) and a ``storycore`` text chunk is spliced in before the
image data, next to ComfyUI's own ``prompt`` and ``workflow`` chunks. Other formats (a graph
ending in a JPEG or WebP saver) are converted to PNG with Pillow.

Every write stays inside the project: the image and its sidecar are written with
``atomic_write_bytes(..., inside=root)``, so a shot folder (or ``assets``, ...) that is a link
leaving the project is refused with an :class:`~storycore.errors.OutsideProjectError` naming the
link, and a link at the file's own name is replaced, never written through. A folder link that
stays inside the project is followed (a shot kept elsewhere in the project is fine).
:func:`check_render_targets` runs the same checks for a whole run before anything is submitted,
so a hostile project stops the run (exit 3) before a server renders or a byte is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from storycore._fsutil import (
    atomic_write_bytes,
    ensure_inside,
    fsync_dir,
    json_bytes,
    mkdirs_inside,
)
from storycore._statefiles import STATE_DIR, check_state_file
from storycore.errors import AssetError
from storycore.manifest import GENERATED_DIR, AssetRecord

__all__ = [
    "PROVENANCE_KEY",
    "check_render_targets",
    "embed_provenance",
    "finish_render",
    "render_folder",
    "store_render",
]

PROVENANCE_KEY = "storycore"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


class _NotPNG(ValueError):
    """The bytes do not start with the PNG signature (convert with Pillow instead)."""


def _chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of every chunk of a PNG, checked; ValueError when damaged."""
    if not data.startswith(_SIGNATURE):
        raise _NotPNG("not a PNG")
    view = memoryview(data)
    out: list[tuple[bytes, int, int]] = []
    pos = len(_SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated chunk header at byte {pos}")
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"chunk {kind!r} at byte {pos} runs past the end of the file")
        crc = int.from_bytes(view[end - 4 : end], "big")
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise ValueError(f"chunk {kind!r} at byte {pos} has a bad CRC")
        out.append((kind, pos, end))
        pos = end
        if kind == b"IEND":
            break
    if not out or out[0][0] != b"IHDR" or out[-1][0] != b"IEND":
        raise ValueError("the PNG lacks its IHDR or IEND chunk")
    if not any(kind == b"IDAT" for kind, _, _ in out):
        raise ValueError("the PNG has no image data")
    return out


def _is_ours(data: bytes, kind: bytes, start: int) -> bool:
    keyword = data[start + 8 : start + 8 + len(PROVENANCE_KEY) + 1]
    return kind in _TEXT_CHUNKS and keyword == PROVENANCE_KEY.encode() + b"\0"


def _text_chunk(keyword: str, text: str) -> bytes:
    body = b"tEXt" + keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
    return (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def _splice(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    chunks = _chunks(data)
    ihdr_start = chunks[0][1]
    width = int.from_bytes(data[ihdr_start + 8 : ihdr_start + 12], "big")
    height = int.from_bytes(data[ihdr_start + 12 : ihdr_start + 16], "big")
    if width <= 0 or height <= 0:
        raise ValueError(f"the PNG says it is {width}x{height}")
    # ASCII JSON, so a tEXt chunk holds it; before the first IDAT, where readers look first.
    ours = _text_chunk(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
    parts: list[bytes | memoryview] = [_SIGNATURE]
    view = memoryview(data)
    inserted = False
    for kind, start, end in chunks:
        if _is_ours(data, kind, start):
            continue  # a stale copy (an image that went through StoryCore before)
        if kind == b"IDAT" and not inserted:
            parts.append(ours)
            inserted = True
        parts.append(view[start:end])
    return b"".join(parts), width, height


def _convert(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        info = PngImagePlugin.PngInfo()
        for key, value in (image.info or {}).items():
            if isinstance(key, str) and isinstance(value, str) and key != PROVENANCE_KEY:
                info.add_text(key, value)
        info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
        out = io.BytesIO()
        image.save(out, format="PNG", pnginfo=info)
        return out.getvalue(), image.width, image.height


def embed_provenance(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    """Return PNG bytes with ``provenance`` in a ``storycore`` text chunk, and the image size.

    ComfyUI's own chunks (``prompt``, ``workflow``) are kept. Non-PNG input is converted to PNG.
    """
    try:
        try:
            return _splice(data, provenance)
        except _NotPNG:
            return _convert(data, provenance)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AssetError(
            f"the server sent an image that cannot be decoded ({exc})",
            where=str(provenance.get("server_url", "server")),
            hint="check the workflow's output node; the panel will be retried on the next run",
        ) from None


def store_render(root: Path, record: AssetRecord, data: bytes) -> AssetRecord:
    """Write the image (durably) and its sidecar atomically; fill in size and sha256.

    The sidecar is a convenience copy of the record for people and tools: the journal's
    ``done`` event carries the same record durably, so the sidecar skips its own fsync, and
    one folder fsync covers both renames.
    """
    target = root / record.path
    record.size = len(data)
    record.sha256 = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(target, data, sync_folder=False, inside=root)
    atomic_write_bytes(
        root / record.sidecar_path,
        json_bytes(record.to_dict()),
        durable=False,
        inside=root,
    )
    fsync_dir(target.parent)
    return record


def finish_render(
    root: Path, record: AssetRecord, data: bytes, provenance: dict[str, Any]
) -> tuple[AssetRecord, bytes]:
    """Embed ``provenance`` in the server's image, then store it; the record and the PNG."""
    png, record.width, record.height = embed_provenance(data, provenance)
    return store_render(root, record, png), png


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
