"""Nothing renders twice: a server that assigns its own prompt ids, killed CLIs that resume, and
a failover away from a server that still renders while it fails its health probes."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from storycore.emulator import Emulator, EmulatorOptions
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import done_count, make_project, render_then_kill
from tests.reliability.conftest import server_renders
from tests.security._support import REPO_ROOT, Handler, hostile_comfyui, run_storycore

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
}


def _options(tmp: Path, name: str, step_seconds: float) -> EmulatorOptions:
    return EmulatorOptions(
        output_dir=tmp / name / "output",
        input_dir=tmp / name / "input",
        temp_dir=tmp / name / "temp",
        step_seconds=step_seconds,
    )


async def _forward(emulator: Emulator, request: web.Request, body: Any) -> web.Response:
    async with (
        ClientSession() as session,
        session.request(request.method, emulator.url + request.path_qs, json=body) as answer,
    ):
        data = await answer.read()
        return web.Response(body=data, status=answer.status, content_type="application/json")


def _own_ids(holder: dict[str, Emulator], seen: list[str]) -> Handler:
    """``POST /prompt`` as an older ComfyUI answers it: the client's prompt_id is ignored and
    the server picks its own."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        body["prompt_id"] = "srv-" + uuid.uuid4().hex
        seen.append(body["prompt_id"])
        return await _forward(holder["emu"], request, body)

    return handler


async def test_server_assigned_ids_kill_9_and_resume_render_each_shot_once(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "p", 4)
    holder: dict[str, Emulator] = {}
    seen: list[str] = []
    options = _options(tmp_path, "server", 0.15)
    async with hostile_comfyui(
        {"POST /prompt": _own_ids(holder, seen)}, tmp=tmp_path, options=options
    ) as (url, emu):
        holder["emu"] = emu
        paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, **FAST_ENV, "PYTHONPATH": os.pathsep.join(paths)}
        await render_then_kill(root, url, env, after=1)
        assert done_count(root) < 4, "the board finished before the kill: nothing to resume"
        # The journal names the prompts by the ids the server uses.
        journaled = {e["prompt_id"] for e in Journal(root).events() if e["event"] == "submit"}
        assert set(seen) <= journaled, (seen, journaled)
        resumed = await run_storycore(
            "generate-images", "--project", str(root), "--backend", url, env=FAST_ENV
        )
        resumed.assert_bounded(seconds=40)
        assert resumed.rc == 0, resumed.output[-3000:]
    renders = server_renders([options.output_dir])  # type: ignore[list-item]
    assert renders == {f"shot_{n:02d}": 1 for n in range(1, 5)}, renders
    assert len(emu.executed_prompt_ids) == 4, emu.executed_prompt_ids
    assert sorted(r.shot_id for r in records(load_project(root))) == [
        f"shot_{n:02d}" for n in range(1, 5)
    ]
    assert Journal(root).open_prompts() == []


async def test_failover_withdraws_the_prompt_from_a_server_that_fails_probes_but_renders(
    tmp_path: Path,
) -> None:
    """Server A accepts a panel, then stops answering ``/system_stats`` while it renders on.
    Before that panel goes to server B, A's prompt is interrupted or deleted there: every shot
    renders once, and A is asked before B gets the panel."""
    holders: dict[str, Emulator] = {}
    prompts: list[tuple[float, str, str, str]] = []  # (time, server, prompt id, shot id)
    withdrawals: list[tuple[float, str]] = []  # (time, request body) on A
    sick = asyncio.Event()

    def submit(server: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = await request.json()
            shot = body["extra_data"]["extra_pnginfo"]["storycore"]["shot_id"]
            prompts.append((time.monotonic(), server, body["prompt_id"], shot))
            answer = await _forward(holders[server], request, body)
            if server == "a":
                sick.set()
            return answer

        return handler

    async def a_stats(request: web.Request) -> web.StreamResponse:
        if sick.is_set():
            await asyncio.sleep(60)  # no answer, ever
        return await _forward(holders["a"], request, None)

    async def a_withdraw(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        withdrawals.append((time.monotonic(), json.dumps(body)))
        return await _forward(holders["a"], request, body)

    root = make_project(tmp_path / "p", 2)
    a_opts = _options(tmp_path, "a", 3.0)  # 3 steps of 3 s: still rendering at failover
    b_opts = _options(tmp_path, "b", 0.05)
    a_routes = {
        "GET /system_stats": a_stats,
        "POST /prompt": submit("a"),
        "POST /interrupt": a_withdraw,
        "POST /queue": a_withdraw,
    }
    async with (
        hostile_comfyui(a_routes, tmp=tmp_path / "a", options=a_opts) as (a_url, a_emu),
        hostile_comfyui({"POST /prompt": submit("b")}, tmp=tmp_path / "b", options=b_opts) as (
            b_url,
            b_emu,
        ),
    ):
        holders.update(a=a_emu, b=b_emu)
        result = await run_storycore(
            "generate-images",
            "--project",
            str(root),
            "--backend",
            a_url,
            "--backend",
            b_url,
            env={
                **FAST_ENV,
                "STORYCORE_RENDER__QUEUE_DEPTH": "1",
                "STORYCORE_COMFYUI__HEALTH_CHECK_TIMEOUT": "0.3",
                "STORYCORE_COMFYUI__FAILOVER_GRACE": "0.5",
            },
            limit_s=60,
        )
        # Let A finish whatever it still runs, so a render it completes is counted.
        async with ClientSession() as http, asyncio.timeout(20):
            while True:
                async with http.get(a_emu.url + "/queue") as answer:
                    queue = await answer.json()
                if not queue["queue_running"] and not queue["queue_pending"]:
                    break
                await asyncio.sleep(0.2)
    result.assert_bounded(seconds=40)
    assert result.rc == 0, result.output[-3000:]
    renders = server_renders([a_opts.output_dir, b_opts.output_dir])  # type: ignore[list-item]
    assert renders == {"shot_01": 1, "shot_02": 1}, (renders, prompts, withdrawals)
    on_a = [p for p in prompts if p[1] == "a"]
    assert len(on_a) == 1, prompts
    _at, _server, a_prompt, shot = on_a[0]
    moved = [p for p in prompts if p[1] == "b" and p[3] == shot]
    assert moved, prompts
    asked = [t for t, body in withdrawals if a_prompt in body]
    assert asked and asked[0] < moved[0][0], (prompts, withdrawals)
    by_shot = {r.shot_id: r.server_url for r in records(load_project(root))}
    assert by_shot == {"shot_01": b_url, "shot_02": b_url}, by_shot
