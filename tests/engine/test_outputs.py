"""Provenance goes into the server's PNG without re-encoding it; damaged images are refused."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from storycore.engine._outputs import PROVENANCE_KEY, embed_provenance
from storycore.errors import AssetError


def _comfy_png(size: tuple[int, int] = (96, 54)) -> bytes:
    """A PNG like ComfyUI's SaveImage writes: its own ``prompt`` and ``workflow`` chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler"}}))
    info.add_text("workflow", json.dumps({"nodes": []}))
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _chunk_types(data: bytes) -> list[bytes]:
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return out


def test_provenance_is_spliced_in_and_the_pixels_are_untouched() -> None:
    original = _comfy_png()
    png, width, height = embed_provenance(original, {"shot_id": "shot_01", "seed": 7})
    assert (width, height) == (96, 54)
    kinds = _chunk_types(png)
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds.index(b"tEXt") < kinds.index(b"IDAT")  # readers see it before the pixels
    # every chunk of the original is there, byte for byte: nothing was re-encoded
    assert len(png) == len(original) + 12 + len(PROVENANCE_KEY) + 1 + len(
        json.dumps({"seed": 7, "shot_id": "shot_01"}, sort_keys=True)
    )
    with Image.open(io.BytesIO(png)) as image:
        assert json.loads(image.info[PROVENANCE_KEY]) == {"shot_id": "shot_01", "seed": 7}
        assert "prompt" in image.info and "workflow" in image.info
        image.load()  # the CRCs and the image data still check out
        assert image.getpixel((5, 5)) == (10, 120, 200)


def test_a_stale_provenance_chunk_is_replaced_not_duplicated() -> None:
    once, _, _ = embed_provenance(_comfy_png(), {"render": 1})
    twice, _, _ = embed_provenance(once, {"render": 2})
    with Image.open(io.BytesIO(twice)) as image:
        assert json.loads(image.info[PROVENANCE_KEY]) == {"render": 2}
    assert twice.count(PROVENANCE_KEY.encode() + b"\0") == 1


@pytest.mark.parametrize(
    "damage",
    ["flip a byte of the image data", "cut the file short", "drop IEND", "not an image"],
)
def test_a_damaged_image_is_an_asset_error(damage: str) -> None:
    data = bytearray(_comfy_png())
    if damage == "flip a byte of the image data":
        idat = data.index(b"IDAT")
        data[idat + 10] ^= 0xFF  # the chunk's CRC no longer matches
    elif damage == "cut the file short":
        del data[len(data) // 2 :]
    elif damage == "drop IEND":
        del data[-12:]
    else:
        data = bytearray(b"<html>502 Bad Gateway</html>")
    with pytest.raises(AssetError, match="cannot be decoded"):
        embed_provenance(bytes(data), {"server_url": "http://gpu:8188"})


def test_a_jpeg_output_is_converted_to_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="JPEG")
    png, width, height = embed_provenance(buffer.getvalue(), {"k": "v"})
    assert png.startswith(b"\x89PNG") and (width, height) == (40, 30)
    with Image.open(io.BytesIO(png)) as image:
        assert json.loads(image.info[PROVENANCE_KEY]) == {"k": "v"}
