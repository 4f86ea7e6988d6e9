"""StoryCore's provenance in a render's PNG, written file to file in bounded memory.

A PNG from the server is never decoded and re-encoded: its chunks are copied one piece at a
time (at most :data:`PIECE` bytes held), each checked on the way (structure and CRCs, which
catch a damaged transfer), and a ``storycore`` text chunk is spliced in before the image data,
next to ComfyUI's own ``prompt`` and ``workflow`` chunks; a stale ``storycore`` chunk (an image
that went through StoryCore before) is dropped, and nothing after ``IEND`` is copied. Other
formats (a graph ending in a JPEG or WebP saver) are converted to PNG with Pillow, which writes
the PNG out as it encodes it.

The output goes through a :class:`HashingWriter`, so the sha256 and size of what was written
are known when the last byte is: the record's checksum is of the final file, without reading it
back. The in-memory form (:func:`embed_provenance`) runs the same code over ``BytesIO``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from typing import Any, BinaryIO

from PIL import Image, PngImagePlugin

from storycore.errors import AssetError

__all__ = [
    "PIECE",
    "PROVENANCE_KEY",
    "HashingWriter",
    "embed_provenance",
    "write_with_provenance",
]

PROVENANCE_KEY = "storycore"
PIECE = 1 << 20  # what one read of the source takes, at most

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_OURS = PROVENANCE_KEY.encode() + b"\0"  # a text chunk's data starts with its keyword and NUL


class _NotPNG(ValueError):
    """The source does not start with the PNG signature (convert with Pillow instead)."""


class HashingWriter:
    """Writes to ``raw`` and keeps the sha256 and the count of what was written.

    It has no ``fileno()`` on purpose: Pillow writes straight to a file descriptor when it can,
    which would bypass the hash. A write the file system refuses (disk full) is kept in
    :attr:`failed`, so it is told apart from a damaged image.
    """

    def __init__(self, raw: BinaryIO | io.BytesIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self.failed: OSError | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            self.raw.write(data)
        except OSError as exc:
            self.failed = exc
            raise
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def _text_chunk(keyword: str, text: str) -> bytes:
    body = b"tEXt" + keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
    return (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def _read(src: BinaryIO | io.BytesIO, size: int, pos: int) -> bytes:
    data = src.read(size)
    if len(data) != size:  # the file changed under us (its length was checked first)
        raise ValueError(f"the file ends inside the chunk at byte {pos}")
    return data


def _copy_chunk(
    src: BinaryIO | io.BytesIO, dst: HashingWriter | None, pos: int, header: bytes
) -> bytes:
    """Copy one chunk's data and CRC from ``src`` (its 8-byte ``header`` already read) to
    ``dst`` (None: check it and drop it), checking the CRC; returns the data's first bytes."""
    length = int.from_bytes(header[:4], "big")
    kind = header[4:]
    head = _read(src, min(length, 16), pos)
    crc = zlib.crc32(head, zlib.crc32(kind))
    if dst is not None:
        dst.write(header)
        dst.write(head)
    left = length - len(head)
    while left:
        piece = _read(src, min(left, PIECE), pos)
        crc = zlib.crc32(piece, crc)
        if dst is not None:
            dst.write(piece)
        left -= len(piece)
    trailer = _read(src, 4, pos)
    if int.from_bytes(trailer, "big") != crc:
        raise ValueError(f"chunk {kind!r} at byte {pos} has a bad CRC")
    if dst is not None:
        dst.write(trailer)
    return head


def _splice(
    src: BinaryIO | io.BytesIO, dst: HashingWriter, provenance: dict[str, Any]
) -> tuple[int, int]:
    """Copy the PNG ``src`` to ``dst`` with ``provenance`` spliced in; the image's size.
    ValueError when the PNG is damaged (``dst`` then holds a part of it: discard it)."""
    start = src.tell()
    size = src.seek(0, io.SEEK_END) - start
    src.seek(start)
    if src.read(len(_SIGNATURE)) != _SIGNATURE:
        raise _NotPNG("not a PNG")
    # ASCII JSON, so a tEXt chunk holds it; before the first IDAT, where readers look first.
    ours = _text_chunk(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
    dst.write(_SIGNATURE)
    pos = len(_SIGNATURE)
    width = height = 0
    inserted = False
    while True:
        if pos >= size:
            raise ValueError("the PNG lacks its IHDR or IEND chunk")
        if pos + 12 > size:
            raise ValueError(f"truncated chunk header at byte {pos}")
        header = _read(src, 8, pos)
        length = int.from_bytes(header[:4], "big")
        kind = header[4:]
        end = pos + 12 + length
        if end > size:
            raise ValueError(f"chunk {kind!r} at byte {pos} runs past the end of the file")
        if pos == len(_SIGNATURE) and kind != b"IHDR":
            raise ValueError("the PNG lacks its IHDR or IEND chunk")
        if kind == b"IDAT" and not inserted:
            dst.write(ours)
            inserted = True
        stale = kind in _TEXT_CHUNKS and _peek(src, len(_OURS)) == _OURS
        head = _copy_chunk(src, None if stale else dst, pos, header)
        if pos == len(_SIGNATURE):
            if length < 8:
                raise ValueError("the PNG's IHDR chunk is too short")
            width, height = int.from_bytes(head[0:4], "big"), int.from_bytes(head[4:8], "big")
            if width <= 0 or height <= 0:
                raise ValueError(f"the PNG says it is {width}x{height}")
        pos = end
        if kind == b"IEND":
            break
    if not inserted:
        raise ValueError("the PNG has no image data")
    return width, height


def _peek(src: BinaryIO | io.BytesIO, size: int) -> bytes:
    """The next ``size`` bytes of ``src``, which stays where it was."""
    here = src.tell()
    data = src.read(size)
    src.seek(here)
    return data


def _convert(
    src: BinaryIO | io.BytesIO, dst: HashingWriter, provenance: dict[str, Any]
) -> tuple[int, int]:
    with Image.open(src) as image:
        image.load()
        info = PngImagePlugin.PngInfo()
        for key, value in (image.info or {}).items():
            if isinstance(key, str) and isinstance(value, str) and key != PROVENANCE_KEY:
                info.add_text(key, value)
        info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
        image.save(dst, format="PNG", pnginfo=info)  # type: ignore[arg-type]
        return image.width, image.height


def write_with_provenance(
    src: BinaryIO | io.BytesIO, dst: HashingWriter, provenance: dict[str, Any]
) -> tuple[int, int]:
    """Write the server's image ``src`` to ``dst`` as a PNG with ``provenance`` in a
    ``storycore`` text chunk; returns the image's size (blocking).

    ComfyUI's own chunks (``prompt``, ``workflow``) are kept; non-PNG input is converted to PNG.
    A damaged image is an :class:`AssetError`; a write the file system refuses is its
    ``OSError`` (the engine says the project cannot be written). On either, ``dst`` holds a
    part of the output: discard it.
    """
    start = src.tell()
    try:
        try:
            return _splice(src, dst, provenance)
        except _NotPNG:
            src.seek(start)
            return _convert(src, dst, provenance)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if dst.failed is not None:
            raise dst.failed from None
        raise AssetError(
            f"the server sent an image that cannot be decoded ({exc})",
            where=str(provenance.get("server_url", "server")),
            hint="check the workflow's output node; the panel will be retried on the next run",
        ) from None


def embed_provenance(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    """The PNG bytes :func:`write_with_provenance` writes for ``data``, and the image size."""
    out = io.BytesIO()
    width, height = write_with_provenance(io.BytesIO(data), HashingWriter(out), provenance)
    return out.getvalue(), width, height
