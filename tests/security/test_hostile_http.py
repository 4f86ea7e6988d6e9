"""Hostile HTTP answers never give a silent success: deep JSON, odd node ids, lone surrogates,
redirects to ``file://`` or to a malformed IPv6 URL.

Each attack is one route of an otherwise honest ComfyUI (the relay of
:func:`tests.security._support.hostile_comfyui`); ``storycore generate-images`` runs against it
in a bounded child process. Before issue 15 every one of these ended with "done" and exit 0
while nothing was rendered (an unexpected exception inside the panel's task); now each is a
clear error naming the route, the panel fails, and the run exits non-zero. This module also
holds the helpers the other ``test_hostile_http_*`` files use.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from storycore.emulator import Emulator
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import make_project
from tests.security._support import ChildResult, Handler, hostile_comfyui, run_storycore

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "2",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "64",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__READ_TIMEOUT": "5",
    "STORYCORE_COMFYUI__IDLE_TIMEOUT": "8",
    "STORYCORE_COMFYUI__MAX_RETRIES": "0",
}


class Prefixed(dict[str, Handler]):
    """Overrides for :func:`hostile_comfyui` matched by prefix: ``"GET /history/"`` catches
    ``GET /history/<any prompt id>``."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        for prefix, handler in self.items():
            if key.startswith(prefix):
                return handler
        return default


async def relay(emulator: Emulator, request: web.Request) -> tuple[int, bytes, str]:
    """What the honest emulator answers to ``request``: (status, body, content type)."""
    async with (
        ClientSession() as session,
        session.request(
            request.method,
            emulator.url + request.path_qs,
            data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer,
    ):
        return answer.status, await answer.read(), answer.headers.get("Content-Type", "")


async def render(
    tmp_path: Path,
    overrides: Mapping[str, Handler],
    *,
    env: Mapping[str, str] | None = None,
    config: str | None = None,
    holder: dict[str, Emulator] | None = None,
    limit_s: float = 60,
    command: str = "generate-images",
    address_space_mb: int = 2048,
    prepare: Callable[[Path], None] | None = None,
) -> tuple[ChildResult, Path]:
    """``storycore COMMAND`` of a one-shot project against a hostile ComfyUI; ``holder["emu"]``
    is the real emulator behind it while it runs. ``config``: a user config file's text (its
    ``{url}`` is replaced by the server's URL); ``prepare(project)`` edits the project first."""
    root = make_project(tmp_path / "project", 1)
    if prepare is not None:
        prepare(root)
    holder = holder if holder is not None else {}
    async with hostile_comfyui(overrides, tmp=tmp_path) as (url, emu):
        holder["emu"] = emu
        args = [command, "--project", str(root), "--backend", url]
        if command == "doctor":
            args = [command, "--backend", url]
        if config is not None:
            path = tmp_path / "config.toml"
            path.write_text(config.replace("{url}", url))
            args += ["--config", str(path)]
        result = await run_storycore(
            *args,
            env={**FAST_ENV, **(env or {})},
            limit_s=limit_s,
            address_space_mb=address_space_mb,
        )
    return result, root


def assert_failed_clearly(result: ChildResult, rc: int, *words: str) -> None:
    """Exit ``rc``, a message holding every one of ``words``, no traceback, bounded memory."""
    result.assert_bounded()
    assert result.rc == rc, result.output[-3000:]
    assert "Traceback" not in result.output, result.output[-3000:]
    for word in words:
        assert word in result.output, result.output[-3000:]


# ------------------------------------------------------------------ PNG made on the fly
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_stream(
    width: int, height: int, *, rows: int = 64, depth: int = 16, channels: int = 4, level: int = 0
) -> Iterator[bytes]:
    """A valid PNG made as it is sent: by default 16-bit RGBA whose IDAT holds stored
    (uncompressed) deflate blocks, so the file is as large as its pixels (8 bytes each) and
    never in memory; ``level`` 9 makes black pixels compress to almost nothing."""
    color = {1: 0, 3: 2, 4: 6}[channels]
    yield b"\x89PNG\r\n\x1a\n" + png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    )
    packer = zlib.compressobj(level)
    row = bytes(1 + width * channels * depth // 8)
    for start in range(0, height, rows):
        data = packer.compress(row * min(rows, height - start))
        if data:
            yield png_chunk(b"IDAT", data)
    yield png_chunk(b"IDAT", packer.flush()) + png_chunk(b"IEND", b"")


def streaming(parts: Iterator[bytes], content_type: str = "image/png") -> Handler:
    """A handler that streams ``parts`` (chunked, no Content-Length)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        try:
            for part in parts:
                await response.write(part)
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading: what the test wants
        return response

    return handler


# ------------------------------------------------------------------ the attacks
def _answer(body: bytes | str, status: int = 200) -> Handler:
    raw = body.encode() if isinstance(body, str) else body

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=raw, status=status, content_type="application/json")

    return handler


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("route", "rc"),
    [("POST /prompt", 8), ("GET /object_info", 4), ("GET /system_stats", 4)],
)
async def test_deeply_nested_json_is_a_clear_error(tmp_path: Path, route: str, rc: int) -> None:
    result, root = await render(tmp_path, Prefixed({route: _answer(DEEP)}))
    assert_failed_clearly(result, rc, "nested more than 100 levels deep")
    assert records(load_project(root)) == []


async def test_a_lone_surrogate_in_the_servers_error_text_fails_the_panel_clearly(
    tmp_path: Path,
) -> None:
    body = (
        '{"error": {"type": "prompt_outputs_failed_validation", "message": "bad \\ud800 value",'
        ' "details": "\\udfff"}, "node_errors": {}}'
    )
    result, root = await render(tmp_path, {"POST /prompt": _answer(body, status=400)})
    assert_failed_clearly(result, 8, "ComfyUI refused the prompt: bad \ufffd value")
    journal = (root / ".storycore" / "journal.jsonl").read_text(encoding="utf-8")
    assert "refused the prompt" in journal


async def test_odd_node_ids_in_a_refusal_are_named(tmp_path: Path) -> None:
    errors = {
        node: {
            "class_type": "KSampler",
            "dependent_outputs": [node],
            "errors": [{"type": "value_not_in_list", "message": "bad value", "details": ""}],
        }
        for node in ("\u00b2", "9" * 5000, "3")
    }
    body = json.dumps({"error": {"type": "x", "message": "invalid"}, "node_errors": errors})
    result, _root = await render(tmp_path, {"POST /prompt": _answer(body, status=400)})
    assert_failed_clearly(result, 8, "node 3 (KSampler)", "node \u00b2 (KSampler)")


@pytest.mark.parametrize("node", ["\u00b2", "9" * 5000])
async def test_odd_output_node_ids_in_the_history_still_land_the_image(
    tmp_path: Path, node: str
) -> None:
    """The history entry names the SaveImage node with an odd id: the image is still found,
    downloaded and recorded (before, sorting the outputs raised and the run said done, exit 0,
    with nothing rendered). No WebSocket, so the prompt is followed through ``/history``."""
    holder: dict[str, Emulator] = {}

    async def no_ws(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def history(request: web.Request) -> web.Response:
        status, body, _ctype = await relay(holder["emu"], request)
        entries = json.loads(body)
        for entry in entries.values():
            outputs = entry.get("outputs", {})
            entry["outputs"] = {
                node if i == 0 else k: v for i, (k, v) in enumerate(outputs.items())
            }
        return web.json_response(entries, status=status)

    overrides = Prefixed({"GET /history/": history, "GET /ws": no_ws})
    result, root = await render(tmp_path, overrides, holder=holder)
    result.assert_bounded(seconds=40)
    assert result.rc == 0, result.output[-3000:]
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://[::1", "gopher://x/1"])
@pytest.mark.parametrize("route", ["POST /prompt", "GET /view"])
async def test_a_redirect_to_a_non_http_url_is_a_clear_error(
    tmp_path: Path, route: str, location: str
) -> None:
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    result, root = await render(tmp_path, {route: moved})
    assert_failed_clearly(result, 8, "which is not an http:// or https:// URL")
    assert records(load_project(root)) == []
