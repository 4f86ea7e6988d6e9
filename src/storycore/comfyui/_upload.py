"""``/upload/image``: reading the image to send (bounded, a regular file only) and the form.

A reference image comes from a project, which is received from others: it may be a link to a
device (``/dev/zero``), a pipe or a file of many gigabytes. Only a regular file of at most the
image limit is read, in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import aiohttp

from storycore.errors import AssetError

__all__ = ["image_form", "read_image", "sha256_of"]


def _read(path: Path, max_bytes: int) -> bytes:
    # O_NONBLOCK: opening a pipe nobody writes to returns at once (a regular file ignores it).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AssetError(
                "the image to upload is not a regular file (a device, a pipe or a folder)",
                where=str(path),
                hint="point the shot at an image file",
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AssetError(
            f"the image to upload is larger than {max_bytes / (1 << 20):g} MiB",
            where=str(path),
            hint="use a smaller reference image, or raise comfyui.max_image_mb",
        )
    return data


async def read_image(path: Path, max_bytes: int) -> bytes:
    """The bytes of the image file ``path`` (an :class:`AssetError` when it cannot be read, is
    not a regular file or is larger than ``max_bytes``)."""
    try:
        return await asyncio.to_thread(_read, path, max_bytes)
    except OSError as exc:
        raise AssetError(
            f"cannot read the image to upload ({exc.strerror or exc})",
            where=str(path),
            hint="check that the file exists and is readable",
        ) from None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_ext(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".png"


def _image_mime(data: bytes) -> str:
    return {".jpg": "image/jpeg", ".webp": "image/webp"}.get(image_ext(data), "image/png")


def image_form(
    data: bytes, name: str, *, type: str, subfolder: str, overwrite: bool
) -> aiohttp.FormData:
    """The multipart form ``POST /upload/image`` takes."""
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type=_image_mime(data))
    form.add_field("type", type)
    if subfolder:
        form.add_field("subfolder", subfolder)
    if overwrite:
        form.add_field("overwrite", "true")
    return form
