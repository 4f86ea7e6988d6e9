"""Pillow helpers: solid images, deterministic placeholders, PNG files with ComfyUI's text chunks.

An IMAGE value in the emulator is a list of RGB ``PIL.Image.Image`` (one per batch item), a
MASK value a list of ``L`` images, mirroring ComfyUI's batched tensors.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from storycore._fsutil import atomic_write_bytes

__all__ = [
    "Images",
    "encode_preview",
    "next_counter",
    "placeholder",
    "png_bytes",
    "save_png",
    "solid",
]

Images = list[Image.Image]

MARK = "PLACEHOLDER"


def solid(width: int, height: int, color: int) -> Image.Image:
    """An RGB image filled with ``color`` (``0xRRGGBB``), like ComfyUI's EmptyImage."""
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return Image.new("RGB", (max(1, width), max(1, height)), rgb)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ValueError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _seed_color(key: str) -> tuple[int, int, int]:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=3).digest()
    # Keep it mid-dark so white text stays readable.
    return (40 + digest[0] % 120, 40 + digest[1] % 120, 40 + digest[2] % 120)


def _wrap(text: str, width_chars: int, max_lines: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if len(candidate) > width_chars and line:
            lines.append(line)
            line = word
        else:
            line = candidate
        if len(lines) >= max_lines:
            break
    if line and len(lines) < max_lines:
        lines.append(line)
    return [s[:width_chars] for s in lines]


def placeholder(
    width: int,
    height: int,
    *,
    prompt: str,
    seed: int | None,
    extra: Sequence[str] = (),
    base: Image.Image | None = None,
) -> Image.Image:
    """A deterministic picture of the requested size showing prompt, seed and ``PLACEHOLDER``.

    The same arguments always give the same pixels. ``base`` (an input picture, e.g. for img2img
    or a preprocessor) is blended in faintly so the output still follows its source.
    """
    width = max(1, int(width))
    height = max(1, int(height))
    bg = _seed_color(f"{prompt}\x00{seed}")
    img = Image.new("RGB", (width, height), bg)
    if base is not None:
        img = Image.blend(img, base.convert("RGB").resize((width, height)), 0.35)
    draw = ImageDraw.Draw(img)
    # A frame and a diagonal cross make the placeholder obvious at any size.
    fg = (255, 255, 255)
    draw.rectangle(
        (0, 0, width - 1, height - 1), outline=fg, width=max(1, min(width, height) // 64)
    )
    draw.line((0, 0, width - 1, height - 1), fill=(200, 200, 200), width=1)
    draw.line((0, height - 1, width - 1, 0), fill=(200, 200, 200), width=1)
    if width < 24 or height < 12:
        return img
    mark_size = max(8, min(48, width // 9))
    mark_font = _font(mark_size)
    text_font = _font(max(8, min(16, width // 24)))
    box = draw.textbbox((0, 0), MARK, font=mark_font)
    mw, mh = box[2] - box[0], box[3] - box[1]
    top = max(2, height // 2 - mh)
    draw.rectangle(
        ((width - mw) // 2 - 4, top - 4, (width + mw) // 2 + 4, top + mh + 8), fill=(0, 0, 0)
    )
    draw.text(((width - mw) // 2, top), MARK, fill=(255, 220, 0), font=mark_font)
    chars = max(8, width // max(5, text_font.size if hasattr(text_font, "size") else 6) * 2)
    lines = [f"seed {seed}" if seed is not None else "no seed", *extra]
    lines += _wrap(prompt, int(chars), 4)
    y = top + mh + 14
    for line in lines:
        if y > height - 10:
            break
        draw.text((6, y), line, fill=fg, font=text_font)
        y += int(getattr(text_font, "size", 10)) + 3
    return img


def png_bytes(img: Image.Image, texts: Mapping[str, str] | None = None, level: int = 4) -> bytes:
    info = None
    if texts:
        info = PngImagePlugin.PngInfo()
        for key, value in texts.items():
            info.add_text(key, value)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=level)
    return buf.getvalue()


def save_png(
    img: Image.Image,
    path: Path,
    *,
    prompt: Mapping[str, Any] | None,
    extra_pnginfo: Mapping[str, Any] | None,
    level: int = 4,
) -> None:
    """Write a PNG with ComfyUI's text chunks (``prompt`` and each ``extra_pnginfo`` key)."""
    texts: dict[str, str] = {}
    if prompt is not None:
        texts["prompt"] = json.dumps(prompt)
    if extra_pnginfo:
        for key, value in extra_pnginfo.items():
            texts[key] = json.dumps(value)
    atomic_write_bytes(path, png_bytes(img, texts, level))


def next_counter(folder: Path, filename: str) -> int:
    """ComfyUI's counter: one more than the highest ``<filename>_NNNNN_`` in ``folder``."""
    best = 0
    plen = len(filename)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return 1
    norm = os.path.normcase(filename)
    for name in entries:
        prefix = name[: plen + 1]
        if prefix[-1:] != "_" or os.path.normcase(prefix[:-1]) != norm:
            continue
        try:
            digits = int(name[plen + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        best = max(best, digits)
    return best + 1


def encode_preview(img: Image.Image, fmt: str = "JPEG", max_size: int = 512) -> bytes:
    """A small preview as the sampler previews of ComfyUI (JPEG by default)."""
    preview = img.convert("RGB")
    if max(preview.size) > max_size:
        preview.thumbnail((max_size, max_size))
    buf = io.BytesIO()
    preview.save(buf, format=fmt, quality=95) if fmt == "JPEG" else preview.save(buf, format=fmt)
    return buf.getvalue()
