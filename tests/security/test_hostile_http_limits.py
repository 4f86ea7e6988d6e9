"""Memory and time stay bounded whatever a server sends: endless and trickled answers, a
/history of millions of entries, a 1 GiB image, a decompression bomb.

Every command runs in a child process with an address-space cap (2 GiB) and must end in time
with a clear error, its peak RSS under 500 MB. Before issue 15 an endless ``/object_info`` took
11 GB, an endless ``/system_stats`` 3 GB inside one probe, a trickled answer (one byte a second)
hung ``generate-images`` for ever, and a 1 GiB PNG cost about 4 GB.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from storycore.emulator import Emulator
from storycore.manifest import records
from storycore.project import load_project
from tests.security._support import Handler
from tests.security.test_hostile_http import (
    Prefixed,
    assert_failed_clearly,
    png_chunk,
    png_stream,
    relay,
    render,
    streaming,
)


def _endless_json(opening: bytes) -> Iterator[bytes]:
    yield opening
    chunk = b"a" * (1 << 20)
    while True:
        yield chunk


def _gzip_bomb() -> Handler:
    """About 2 MiB on the wire that inflate to 2 GiB of JSON text: 128 gzip members of 16 MiB
    each (a gzip stream may hold many; each member is made once)."""
    zeros = gzip.compress(bytes(1 << 24), compresslevel=9)
    body = gzip.compress(b'{"system": {"x": "' + bytes(1 << 24), compresslevel=9) + zeros * 127

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    return handler


ENDLESS = {
    "endless": lambda: streaming(_endless_json(b'{"system": {"x": "'), "application/json"),
    "gzip bomb": _gzip_bomb,
}


@pytest.mark.parametrize("kind", list(ENDLESS))
@pytest.mark.parametrize("command", ["doctor", "generate-images"])
async def test_an_endless_system_stats_is_cut_off(tmp_path: Path, kind: str, command: str) -> None:
    result, _root = await render(
        tmp_path, {"GET /system_stats": ENDLESS[kind]()}, command=command, limit_s=60
    )
    assert_failed_clearly(result, 4, "larger than 1 MiB")
    result.assert_bounded(seconds=30)


@pytest.mark.parametrize("kind", list(ENDLESS))
@pytest.mark.parametrize("command", ["doctor", "preflight", "generate-images"])
async def test_an_endless_object_info_is_cut_off(tmp_path: Path, kind: str, command: str) -> None:
    result, _root = await render(
        tmp_path, {"GET /object_info": ENDLESS[kind]()}, command=command, limit_s=60
    )
    result.assert_bounded(seconds=30)
    assert "Traceback" not in result.output, result.output[-3000:]
    assert result.rc == 4, result.output[-3000:]
    assert "larger than 64 MiB" in result.output, result.output[-3000:]
    # ... and says which setting raises the limit, in every command
    assert "max_response_mb" in result.output, result.output[-3000:]


async def test_a_history_of_millions_of_entries_takes_no_gigabytes(tmp_path: Path) -> None:
    """No WebSocket, so the prompt is followed through ``/history/<id>``, which answers our
    entry among three million others (45 MB of JSON, GBs as Python objects): refused, the
    panel fails in bounded time and memory."""
    holder: dict[str, Emulator] = {}

    async def history(request: web.Request) -> web.StreamResponse:
        _status, body, _ctype = await relay(holder["emu"], request)
        inner = body.strip()[1:-1]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"p": {}' + (b"," + inner if inner else b""))
            for start in range(0, 3_000_000, 10_000):
                await response.write(
                    b"".join(b',"p%07d": {}' % n for n in range(start, start + 10_000))
                )
            await response.write(b"}")
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading
        return response

    async def no_ws(request: web.Request) -> web.Response:
        return web.Response(status=404)

    overrides = Prefixed({"GET /history/": history, "GET /ws": no_ws})
    result, root = await render(tmp_path, overrides, holder=holder, limit_s=90)
    result.assert_bounded(seconds=60)
    assert result.rc == 8, result.output[-3000:]
    assert "Traceback" not in result.output
    assert records(load_project(root)) == []


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [
        (16384, 8192, "16384x8192 pixels"),  # 1 GiB: too many pixels, seen in its header
        (6000, 6000, "larger than 134217728 bytes (128 MiB)"),  # 275 MiB: cut off at 128
    ],
)
async def test_a_huge_png_is_refused_while_it_streams(
    tmp_path: Path, width: int, height: int, words: str
) -> None:
    """A valid 16-bit RGBA PNG, 8 bytes a pixel on the wire (made as it is sent)."""
    result, root = await render(
        tmp_path, {"GET /view": streaming(png_stream(width, height))}, limit_s=60
    )
    assert_failed_clearly(result, 8, words)
    result.assert_bounded(seconds=40)
    assert records(load_project(root)) == []


@pytest.mark.parametrize(("depth", "channels"), [(8, 3), (16, 4)])
async def test_an_image_at_the_pixel_limit_renders_in_bounded_memory(
    tmp_path: Path, depth: int, channels: int
) -> None:
    """6320 x 6320 (39.9 megapixels, the limit is 40) black pixels, RGB or 16-bit RGBA, a few
    hundred KB on the wire: landed, and the storyboard's thumbnail decodes it, all under
    500 MB; one row more is refused from the header."""
    image = b"".join(png_stream(6320, 6320, depth=depth, channels=channels, level=9))
    too_big = b"".join(png_stream(6320, 6330, depth=depth, channels=channels, level=9))
    assert len(image) < 2 << 20

    async def view(request: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/png")

    result, root = await render(tmp_path / "fits", {"GET /view": view}, limit_s=90)
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output[-3000:]
    [record] = records(load_project(root))
    assert (record.width, record.height) == (6320, 6320)

    async def view_too_big(request: web.Request) -> web.Response:
        return web.Response(body=too_big, content_type="image/png")

    result, root = await render(tmp_path / "over", {"GET /view": view_too_big}, limit_s=90)
    assert_failed_clearly(result, 8, "6320x6330 pixels, more than the 40,000,000 allowed")


async def test_an_image_just_under_the_size_limit_renders_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """4000 x 4000 16-bit RGBA, stored: 122 MiB on the wire (the limit is 128), landed with its
    provenance and shown on the storyboard under 500 MB."""
    result, root = await render(
        tmp_path, {"GET /view": streaming(png_stream(4000, 4000))}, limit_s=90
    )
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output[-3000:]
    [record] = records(load_project(root))
    assert record.size > 120 << 20


async def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A tiny PNG that says it is 100000 x 100000 pixels (10 G pixels of zeros)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(1 << 20)))
        + png_chunk(b"IEND", b"")
    )

    async def view(request: web.Request) -> web.Response:
        return web.Response(body=bomb, content_type="image/png")

    result, root = await render(tmp_path, {"GET /view": view})
    assert_failed_clearly(result, 8, "100000x100000 pixels")
    assert records(load_project(root)) == []


# ------------------------------------------------------------------ trickled answers
def _trickle(first: bytes = b"") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(first)
            while True:
                await response.write(b" ")
                await asyncio.sleep(1)
        except (ConnectionError, RuntimeError):
            pass
        return response

    return handler


DEADLINE = {"STORYCORE_COMFYUI__REQUEST_DEADLINE": "3"}


@pytest.mark.parametrize("command", ["preflight", "generate-images"])
async def test_a_trickled_object_info_ends_at_the_request_deadline(
    tmp_path: Path, command: str
) -> None:
    result, _root = await render(
        tmp_path, {"GET /object_info": _trickle()}, command=command, env=DEADLINE, limit_s=60
    )
    assert_failed_clearly(result, 4, "GET /object_info within 3 s")
    result.assert_bounded(seconds=20)


def _init_image(root: Path) -> None:
    refs = root / "assets" / "refs"
    refs.mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(refs / "rough.png")
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text())
    board["shots"][0].setdefault("references", {})["init_image"] = "assets/refs/rough.png"
    board_path.write_text(json.dumps(board))


@pytest.mark.parametrize("route", ["GET /view", "POST /upload/image", "GET /history/"])
async def test_a_trickled_answer_during_a_render_fails_the_panel_in_time(
    tmp_path: Path, route: str
) -> None:
    """``/view`` after the render, the reference image's upload before it, ``/history`` while
    following the prompt without a WebSocket: each trickles one byte a second."""
    overrides = Prefixed({route: _trickle(b"{")})
    if route == "GET /history/":

        async def no_ws(request: web.Request) -> web.Response:
            return web.Response(status=404)

        overrides["GET /ws"] = no_ws
    prepare = _init_image if route == "POST /upload/image" else None
    result, root = await render(tmp_path, overrides, env=DEADLINE, prepare=prepare)
    result.assert_bounded(seconds=40)
    assert result.rc == 8, result.output[-3000:]
    assert "Traceback" not in result.output
    assert records(load_project(root)) == []
