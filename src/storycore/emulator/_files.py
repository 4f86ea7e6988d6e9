"""The file side of the emulator's routes: ``/view`` lookups and conversions, uploads with
ComfyUI's rename-on-collision, and the mask upload's alpha painting. Blocking: call through
``asyncio.to_thread``."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from storycore._fsutil import atomic_write_bytes

from ._images import png_bytes

__all__ = ["apply_mask", "channel_png", "convert_image", "store_upload", "view_path"]


def view_path(base: Path, subfolder: str | None, filename: str) -> tuple[Path, str] | int:
    """The file ``/view`` serves, or the status ComfyUI answers (403 escape, 404 missing)."""
    root = base.resolve()
    folder = root
    if subfolder is not None:
        folder = Path(os.path.abspath(root / subfolder))
        if os.path.commonpath((str(folder), str(root))) != str(root):
            return 403
    name = os.path.basename(filename)
    path = folder / name
    if not path.is_file():
        return 404
    return path, name


def apply_mask(source: Path | None, mask: bytes) -> bytes | None:
    """ComfyUI's mask upload: the original picture with the mask's alpha, text chunks kept."""
    if source is None:
        return None
    with Image.open(source) as original, Image.open(io.BytesIO(mask)) as painted:
        texts = dict(getattr(original, "text", {}) or {})
        rgba = original.convert("RGBA")
        rgba.putalpha(painted.convert("RGBA").getchannel("A"))
    return png_bytes(rgba, texts, 4)


def store_upload(
    base: Path,
    subfolder: str,
    filename: str,
    data: bytes,
    overwrite: bool,
    transform: Callable[[bytes], bytes | None] | None = None,
) -> str | None:
    """Write an upload like ComfyUI (rename on collision); None when it would escape ``base``."""
    root = str(base.resolve())
    folder = os.path.join(root, os.path.normpath(subfolder)) if subfolder else root
    if os.path.commonpath((root, os.path.abspath(os.path.join(folder, filename)))) != root:
        return None
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(filename)
    path = os.path.join(folder, filename)
    if not overwrite:
        i = 1
        digest = hashlib.sha256(data).digest()
        while os.path.exists(path):
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).digest() == digest:
                    return filename
            filename = f"{stem} ({i}){ext}"
            path = os.path.join(folder, filename)
            i += 1
    body = transform(data) if transform is not None else data
    if body is not None:
        atomic_write_bytes(Path(path), body)
    return filename


def convert_image(path: Path, fmt: str, quality: int) -> bytes:
    with Image.open(path) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format=fmt, quality=quality)
        return buf.getvalue()


def channel_png(path: Path, channel: str) -> bytes:
    with Image.open(path) as img:
        if channel == "rgb":
            out = img.convert("RGB")
        else:
            rgba = img.convert("RGBA")
            alpha = rgba.getchannel("A")
            out = Image.new("RGBA", rgba.size, (0, 0, 0, 0))
            out.putalpha(alpha)
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        return buf.getvalue()
