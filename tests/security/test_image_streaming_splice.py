"""The render written file to file is, byte for byte, the one the in-memory splice made.

:func:`finish_render` reads the downloaded file a piece at a time and writes the render with
its provenance chunk; ``_in_memory`` below is the engine's former in-memory code (the whole file
parsed into a list of chunks, joined again), the reference the streamed output must equal for
PNGs of every shape a server sends, and for a JPEG or WebP converted to PNG. On any failure the
downloaded file and the temporary render are gone and nothing is left at the render's name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from storycore.engine._outputs import PROVENANCE_KEY, download_name, finish_render
from storycore.engine._provenance import PIECE
from storycore.errors import AssetError
from storycore.manifest import AssetRecord, asset_relpath
from tests.security.test_hostile_http import png_chunk, png_stream

PROVENANCE: dict[str, Any] = {"shot_id": "shot_01", "render": 1, "seed": 7, "positive": "a cat"}


# ------------------------------------------------------------------ the reference
def _in_memory(data: bytes, provenance: dict[str, Any]) -> tuple[bytes, int, int]:
    """The pre-streaming engine: parse every chunk, drop a stale ``storycore`` one, insert ours
    before the first IDAT, join; non-PNG input converted by Pillow into a BytesIO."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            info = PngImagePlugin.PngInfo()
            for key, value in image.info.items():
                if isinstance(key, str) and isinstance(value, str) and key != PROVENANCE_KEY:
                    info.add_text(key, value)
            info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
            out = io.BytesIO()
            image.save(out, format="PNG", pnginfo=info)
            return out.getvalue(), image.width, image.height
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        assert zlib.crc32(data[pos + 4 : end - 4]) == int.from_bytes(data[end - 4 : end], "big")
        chunks.append((data[pos + 4 : pos + 8], pos, end))
        pos = end
        if chunks[-1][0] == b"IEND":
            break
    text = json.dumps(provenance, sort_keys=True).encode("latin-1")
    ours = png_chunk(b"tEXt", PROVENANCE_KEY.encode() + b"\0" + text)
    parts, inserted = [data[:8]], False
    for kind, start, end in chunks:
        if kind in (b"tEXt", b"zTXt", b"iTXt") and data[start + 8 : start + 18] == b"storycore\0":
            continue
        if kind == b"IDAT" and not inserted:
            parts.append(ours)
            inserted = True
        parts.append(data[start:end])
    ihdr = chunks[0][1]
    width = int.from_bytes(data[ihdr + 8 : ihdr + 12], "big")
    height = int.from_bytes(data[ihdr + 12 : ihdr + 16], "big")
    return b"".join(parts), width, height


# ------------------------------------------------------------------ the inputs
def _comfy_png(size: tuple[int, int] = (300, 200), mode: str = "RGB") -> bytes:
    """A PNG as ComfyUI's SaveImage writes it: ``prompt`` and ``workflow`` text chunks, noise
    pixels (so the image data spans several IDAT chunks)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}))
    info.add_text("workflow", json.dumps({"nodes": [{"id": 3}]}))
    channels = len(mode)
    image = Image.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=1)
    return out.getvalue()


def _with_stale_provenance_after_the_pixels() -> bytes:
    data = _comfy_png()
    stale = png_chunk(b"tEXt", b"storycore\0" + b'{"render": 0}')
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + stale + data[iend:]


def _with_bytes_after_iend() -> bytes:
    return _comfy_png() + b"trailing junk a server appended"


def _one_idat_larger_than_a_piece() -> bytes:
    """A 16-bit RGBA PNG of stored pixels whose single IDAT chunk is 3.5 pieces long."""
    width = 700
    rows = (PIECE * 7 // 2) // (1 + width * 8) + 1
    raw = bytes(1 + width * 8) * rows
    head = b"\x89PNG\r\n\x1a\n" + png_chunk(
        b"IHDR", width.to_bytes(4, "big") + rows.to_bytes(4, "big") + bytes([16, 6, 0, 0, 0])
    )
    return head + png_chunk(b"IDAT", zlib.compress(raw, 0)) + png_chunk(b"IEND", b"")


def _streamed_16bit() -> bytes:
    return b"".join(png_stream(320, 240, rows=16))


def _encoded(kind: str) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (120, 80), os.urandom(120 * 80 * 3)).save(out, format=kind)
    return out.getvalue()


INPUTS = {
    "ComfyUI PNG, several IDATs": _comfy_png,
    "RGBA PNG": lambda: _comfy_png(mode="RGBA"),
    "stale provenance after the pixels": _with_stale_provenance_after_the_pixels,
    "bytes after IEND": _with_bytes_after_iend,
    "one IDAT larger than a piece": _one_idat_larger_than_a_piece,
    "16-bit RGBA made as sent": _streamed_16bit,
    "JPEG": lambda: _encoded("JPEG"),
    "WebP": lambda: _encoded("WEBP"),
}


# ------------------------------------------------------------------ helpers
def _record(render: int = 1) -> AssetRecord:
    return AssetRecord(
        asset_id=f"shot_01_v1_r{render:03d}",
        shot_id="shot_01",
        version=1,
        render=render,
        path=str(asset_relpath("shot_01", 1, render)),
        sha256="",
        size=0,
        width=0,
        height=0,
        placeholder=False,
        created_at="2026-01-01T00:00:00Z",
    )


def _downloaded(root: Path, data: bytes) -> Path:
    """The server's image as the engine downloads it: a temporary file in the shot folder."""
    folder = root / "assets" / "images" / "generated" / "shot_01"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / download_name("shot_01")
    source.write_bytes(data)
    return source


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("name", list(INPUTS))
def test_the_streamed_render_equals_the_in_memory_one(tmp_path: Path, name: str) -> None:
    data = INPUTS[name]()
    expected, width, height = _in_memory(data, PROVENANCE)
    source = _downloaded(tmp_path, data)
    record = finish_render(tmp_path, _record(), source, dict(PROVENANCE))
    written = (tmp_path / record.path).read_bytes()
    assert written == expected
    assert (record.width, record.height) == (width, height)
    assert record.size == len(written)
    assert record.sha256 == hashlib.sha256(written).hexdigest()
    assert not source.exists()  # the downloaded file is consumed
    sidecar = json.loads((tmp_path / record.sidecar_path).read_text())
    assert sidecar["sha256"] == record.sha256 and sidecar["size"] == record.size
    assert _files(tmp_path) == sorted([record.path, record.sidecar_path])


def _bad_crc_in_the_last_idat() -> bytes:
    data = bytearray(_comfy_png())
    last = data.rindex(b"IDAT")
    data[last + 10] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    ("damage", "data"),
    [
        ("a bad CRC in the last IDAT", _bad_crc_in_the_last_idat),
        ("cut short inside the pixels", lambda: _comfy_png()[:-5000]),
        ("no IEND", lambda: _comfy_png()[:-12]),
        ("not an image", lambda: b"<html>502 Bad Gateway</html>"),
    ],
)
def test_a_damaged_download_leaves_nothing_behind(tmp_path: Path, damage: str, data: Any) -> None:
    """Refused as an AssetError after part of the render was written: the temporary render
    and the downloaded file are removed, nothing is at the render's name."""
    source = _downloaded(tmp_path, data())
    with pytest.raises(AssetError, match="cannot be decoded"):
        finish_render(tmp_path, _record(), source, dict(PROVENANCE))
    assert _files(tmp_path) == []


def test_a_write_the_disk_refuses_is_its_os_error_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """The render's name is taken by a folder (the rename fails after the whole image was
    written): the OSError is raised as itself, not as a damaged image (the engine says the
    project cannot be written), and both temporary files are gone."""
    source = _downloaded(tmp_path, _comfy_png())
    record = _record()
    blocker = tmp_path / record.path
    blocker.mkdir()
    (blocker / "keep").write_text("a person's file")
    with pytest.raises(OSError) as caught:
        finish_render(tmp_path, record, source, dict(PROVENANCE))
    assert not isinstance(caught.value, AssetError)
    assert _files(tmp_path) == [f"{record.path}/keep"]
