"""Is what a server sent as an image an image, and not a decompression bomb?

Two checks, both without decoding the pixels:

* while a download streams, :class:`HeaderCheck` reads the size from the first bytes (a PNG's
  IHDR, or Pillow's header parser for the other formats) and refuses an image of more than the
  allowed pixels before the rest arrives;
* once it is whole, :func:`verify_image` opens it with Pillow (only the formats a ComfyUI save
  node writes) and runs ``verify()``: a PNG's chunk structure and CRCs, the others' headers.

Pillow parses hostile bytes here, and its parsers raise more than ``OSError`` on junk
(``SyntaxError``, ``struct.error``, ``IndexError``...): any exception from it means "not an
image" and becomes an :class:`~storycore.errors.AssetError`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from storycore.errors import AssetError

__all__ = ["IMAGE_FORMATS", "HeaderCheck", "verify_image"]

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""What Pillow may parse a server's image as (what ComfyUI's and common custom save nodes
write); its other, rarer parsers are never run on a server's bytes."""

_PNG = b"\x89PNG\r\n\x1a\n"
_HEAD = 64 * 1024  # enough for the header of every format above (a PNG needs 24 bytes)


def _too_many_pixels(name: str, where: str, size: str, limit: int) -> AssetError:
    return AssetError(
        f"{name!r} says it is {size} pixels, more than the {limit:,} allowed (a decompression "
        "bomb, or an image no storyboard needs); it was not kept",
        where=where,
        hint="check the graph's output size",
    )


def _not_an_image(name: str, where: str, why: str) -> AssetError:
    return AssetError(
        f"{name!r} is not an image StoryCore can read ({why}); it was not kept",
        where=where,
        hint="check the graph's output node, or the server that sent it",
    )


def _check_size(width: int, height: int, max_pixels: int, name: str, where: str) -> None:
    if width <= 0 or height <= 0:
        raise _not_an_image(name, where, f"it says it is {width}x{height}")
    if width * height > max_pixels:
        raise _too_many_pixels(name, where, f"{width}x{height}", max_pixels)


def _open(source: io.BytesIO | Path) -> Image.Image:
    with warnings.catch_warnings():
        # Our own pixel limit decides; Pillow's warning would only repeat it (as an error in
        # the tests, which turn warnings into errors).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source, formats=IMAGE_FORMATS)


class HeaderCheck:
    """Fed with a download's first bytes; checks the image's size from its header as soon as
    the header has arrived (at most :data:`_HEAD` bytes are kept)."""

    def __init__(self, *, max_pixels: int, name: str, where: str) -> None:
        self.max_pixels = max_pixels
        self.name = name
        self.where = where
        self._head = bytearray()
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._head += chunk[: _HEAD - len(self._head)]
        head = bytes(self._head)
        if head.startswith(_PNG) and len(head) >= 24:
            self.done = True
            if head[12:16] != b"IHDR":
                raise _not_an_image(self.name, self.where, "a PNG without its IHDR header")
            width = int.from_bytes(head[16:20], "big")
            height = int.from_bytes(head[20:24], "big")
            _check_size(width, height, self.max_pixels, self.name, self.where)
        elif len(head) >= _HEAD:
            self.finish()

    def finish(self) -> None:
        """The whole file (or :data:`_HEAD` bytes) arrived: check what the header says."""
        if self.done:
            return
        self.done = True
        try:
            with _open(io.BytesIO(bytes(self._head))) as image:
                width, height = image.size
        except Image.DecompressionBombError:
            raise _too_many_pixels(self.name, self.where, "more", self.max_pixels) from None
        except Exception:  # junk, or a header past 64 KiB: verify_image decides
            return
        _check_size(width, height, self.max_pixels, self.name, self.where)


def verify_image(
    source: bytes | Path, *, max_pixels: int, name: str, where: str
) -> tuple[int, int, str]:
    """``(width, height, format)`` of a whole image, checked (blocking: call it in a thread
    for a file); an :class:`AssetError` when it is not one or has too many pixels."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with _open(stream) as image:
            width, height = image.size
            kind = image.format or "?"
            _check_size(width, height, max_pixels, name, where)
            image.verify()
    except AssetError:
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, where, "more", max_pixels) from None
    except UnidentifiedImageError:
        raise _not_an_image(name, where, "not a PNG, JPEG, WebP, GIF, BMP or TIFF") from None
    except Exception as exc:  # any failure of a Pillow parser: see the module docstring
        raise _not_an_image(name, where, _pillow_words(exc)) from None
    return width, height, kind


def _pillow_words(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return f"damaged: {text}" if text else "damaged"
