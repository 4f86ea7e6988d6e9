"""Hostile servers against the render loop: a poll that never ends, answers that make the
client raise an unexpected Python error. The CLI runs in a bounded child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from storycore.emulator import Emulator
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import make_project
from tests.security._support import Handler, hostile_comfyui, run_storycore

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__MAX_RETRIES": "0",
}


async def _no_websocket(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no WebSocket here")


async def _trickle(request: web.Request) -> web.StreamResponse:
    """A JSON answer that never ends: a space every 0.2 s (valid leading whitespace), so no
    per-read timeout ever fires."""
    answer = web.StreamResponse(headers={"Content-Type": "application/json"})
    await answer.prepare(request)
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        for _ in range(3000):
            await answer.write(b" ")
            await asyncio.sleep(0.2)
    return answer


async def test_the_prompt_deadline_fires_while_a_queue_poll_is_stuck(tmp_path: Path) -> None:
    """No WebSocket, so the tracker polls ``/queue``; that poll trickles forever. The prompt's
    deadline (3 s) must still end the panel with a clear error, long before any poll ends."""
    root = make_project(tmp_path / "p", 1)
    routes = {"GET /ws": _no_websocket, "GET /queue": _trickle}
    async with hostile_comfyui(routes, tmp=tmp_path) as (url, _emu):
        result = await run_storycore(
            "generate-images",
            "--project",
            str(root),
            "--backend",
            url,
            env={
                **FAST_ENV,
                "STORYCORE_COMFYUI__PROMPT_TIMEOUT": "3",
                "STORYCORE_COMFYUI__IDLE_TIMEOUT": "600",
                "STORYCORE_COMFYUI__READ_TIMEOUT": "5",
            },
            limit_s=45,
        )
    result.assert_bounded(seconds=25)
    assert result.rc == 8, result.output[-3000:]
    assert "deadline passed" in result.output, result.output[-3000:]
    assert "Traceback" not in result.output


def _fixed_id(holder: dict[str, Emulator], prompt_id: str) -> Handler:
    """``POST /prompt`` that runs the prompt under an id the server chose (known to the test)."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        body["prompt_id"] = prompt_id
        return await _forward(holder["emu"], request, body)

    return handler


async def _forward(emulator: Emulator, request: web.Request, body: Any) -> web.Response:
    async with (
        ClientSession() as session,
        session.request(request.method, emulator.url + request.path_qs, json=body) as answer,
    ):
        data = await answer.read()
        return web.Response(body=data, status=answer.status, content_type="application/json")


async def test_an_unexpected_error_reading_the_history_fails_the_panel_at_once(
    tmp_path: Path,
) -> None:
    """The history entry of our finished prompt names a frame rate of 10**400: a valid JSON
    number that Python cannot make a float of (OverflowError, not a StoryCore error). The
    panel fails at once with a message naming the answer, exit 8; it does not hang until the
    idle timeout nor render again."""
    root = make_project(tmp_path / "p", 1)
    holder: dict[str, Emulator] = {}
    prompt_id = "srv-fixed-1"

    async def history(request: web.Request) -> web.Response:
        async with (
            ClientSession() as session,
            session.get(holder["emu"].url + request.path_qs) as answer,
        ):
            data = await answer.json()
        for entry in data.values():
            for output in entry.get("outputs", {}).values():
                for image in output.get("images", []):
                    image["frame_rate"] = 10**400
        return web.Response(text=json.dumps(data), content_type="application/json")

    routes = {
        "GET /ws": _no_websocket,
        "POST /prompt": _fixed_id(holder, prompt_id),
        f"GET /history/{prompt_id}": history,
    }
    async with hostile_comfyui(routes, tmp=tmp_path) as (url, emu):
        holder["emu"] = emu
        result = await run_storycore(
            "generate-images",
            "--project",
            str(root),
            "--backend",
            url,
            "--json",
            env={**FAST_ENV, "STORYCORE_COMFYUI__IDLE_TIMEOUT": "600"},
            limit_s=45,
        )
        assert emu.executed_prompt_ids == [prompt_id]
    result.assert_bounded(seconds=30)
    assert result.rc == 8, result.output[-3000:]
    assert "Traceback" not in result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [e for e in lines if e.get("event") == "panel_failed"]
    assert failed and all(e["shot_id"] == "shot_01" for e in failed), lines
    assert "/history/" in failed[-1]["error"] + (failed[-1]["where"] or ""), failed[-1]
    assert "OverflowError" in failed[-1]["error"], failed[-1]
    assert records(load_project(root)) == []
    assert load_project(root).data["shots_index"]["shot_01"]["status"] == "failed"
    assert Journal(root).open_prompts() == []
