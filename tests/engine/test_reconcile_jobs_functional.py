"""Reconciliation after a crash and a server restart that emptied ``/history``.

The CLI is killed with SIGKILL while prompts are queued; they finish on the server. Then the
server "restarts": an inline proxy in front of the emulator answers ``/history`` with ``{}`` (what
a restarted ComfyUI holds: its history is in memory, ComfyUI execution.py PromptQueue) while
the rest goes through. On today's ComfyUI the engine asks ``GET /api/jobs/{id}`` (ComfyUI
server.py @ 5e14d797, get_job_by_id), finds each job completed with its outputs and downloads
them: nothing renders twice. On 0.3.64 (no jobs API) the same prompts are lost and render again,
as before; the board is complete either way."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, RenderRequest
from storycore.journal import Journal
from tests.engine.conftest import fast_settings, make_project, render_then_kill
from tests.engine.test_engine_functional import _check_project
from tests.security._support import relay_ws

SHOTS = 4


async def _restartable_proxy(upstream: str, state: dict[str, Any]) -> tuple[web.AppRunner, str]:
    """Forwards to ``upstream`` (WebSocket too); with ``state["forgot"]`` every GET of
    ``/history`` answers ``{}``. Each request is listed in ``state["seen"]``."""
    session = ClientSession()
    state["session"] = session

    async def forward(request: web.Request) -> web.StreamResponse:
        state["seen"].append((request.method, request.path))
        if request.path == "/ws":
            return await relay_ws(request, session, upstream)
        if state["forgot"] and request.method == "GET" and request.path.startswith("/history"):
            return web.json_response({})
        async with session.request(
            request.method,
            upstream + request.path_qs,
            data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            body = await answer.read()
            ctype = answer.headers.get("Content-Type", "application/octet-stream")
        return web.Response(body=body, status=answer.status, content_type=ctype.split(";")[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _queue_drained(url: str) -> None:
    async with ClientSession() as session, asyncio.timeout(30):
        while True:
            async with session.get(url + "/queue") as answer:
                queue = await answer.json()
            if not queue["queue_running"] and not queue["queue_pending"]:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("profile", ["current", "0.3.64"])
async def test_restart_emptied_history_jobs_api_still_knows(tmp_path: Path, profile: str) -> None:
    root = make_project(tmp_path, SHOTS)
    state: dict[str, Any] = {"forgot": False, "seen": []}
    env = dict(os.environ)
    env.update(
        {
            "STORYCORE_RENDER__STEPS": "3",
            "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
            "STORYCORE_RENDER__QUEUE_DEPTH": str(SHOTS),
            "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
        }
    )
    async with Emulator(EmulatorOptions(profile=profile, step_seconds=0.15)) as emu:
        runner, url = await _restartable_proxy(emu.url, state)
        try:
            await render_then_kill(root, url, env, after=1)
            await _queue_drained(emu.url)
            executed = set(emu.executed_prompt_ids)
            journal = Journal(root)
            finished_open = [p for p in journal.open_prompts() if p.prompt_id in executed]
            journal.close()
            assert finished_open, "the kill left no finished prompt open: nothing to reconcile"

            state["forgot"], state["seen"] = True, []  # the server restarted: /history is empty
            settings = fast_settings(**{"render.queue_depth": SHOTS})
            summary = await ImageEngine(settings).render(RenderRequest(root, backends=(url,)))
        finally:
            await runner.cleanup()
            await state["session"].close()
    assert summary.exit_code == 0, summary.to_dict()
    _check_project(root, SHOTS)
    asked = {path for method, path in state["seen"] if path.startswith("/api/jobs/")}
    submits = _submits_per_shot(root)
    reopened = {p.shot_id for p in finished_open}
    if profile == "current":
        assert asked >= {f"/api/jobs/{p.prompt_id}" for p in finished_open}
        # every finished prompt was collected from its job record, none rendered again
        assert submits == {f"shot_{n:02d}": 1 for n in range(1, SHOTS + 1)}, submits
        assert len(emu.executed_prompt_ids) == len(set(emu.executed_prompt_ids)) == SHOTS
    else:
        assert not asked  # no jobs API: /history and /queue, as 0.3.64 needs
        assert all(submits[shot] == 2 for shot in reopened), submits  # lost: rendered again
        assert len(emu.executed_prompt_ids) > SHOTS


def _submits_per_shot(root: Path) -> dict[str, int]:
    journal = Journal(root)
    try:
        return dict(Counter(str(e["shot_id"]) for e in journal.events() if e["event"] == "submit"))
    finally:
        journal.close()
