"""Crash safety: the CLI killed with SIGKILL mid-board, then run again; hostile servers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, RenderRequest
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import done_count, fast_settings, make_project, render_then_kill
from tests.engine.test_engine_functional import _check_project


async def test_kill_9_the_cli_then_rerun_loses_nothing_and_renders_nothing_twice(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 12)
    async with Emulator(EmulatorOptions(step_seconds=0.05)) as emu:
        env = dict(os.environ)
        env.update(
            {
                "STORYCORE_RENDER__STEPS": "3",
                "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
                "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
            }
        )
        await render_then_kill(root, emu.url, env, after=3, args=("--json",))
        assert done_count(root) < 12
        load_project(root)  # never half-written
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(emu.url,))
        )
        assert summary.counts["rendered"] + summary.counts["skipped"] == 12, summary.to_dict()
        executed = emu.executed_prompt_ids
        assert len(executed) == len(set(executed)) == 12, executed
    _check_project(root, 12)


async def _hostile_proxy(upstream: str) -> tuple[web.AppRunner, str]:
    """Forwards to ``upstream`` but rewrites every output filename in /history to escape."""

    async def forward(request: web.Request) -> web.StreamResponse:
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "")},
            ) as answer,
        ):
            body = await answer.read()
            ctype = answer.headers.get("Content-Type", "application/octet-stream")
            if request.path.startswith("/history/") and answer.status == 200:
                data: Any = json.loads(body)
                for entry in data.values():
                    for output in entry.get("outputs", {}).values():
                        for image in output.get("images", []):
                            image["filename"] = "../../../evil.png"
                body = json.dumps(data).encode()
            return web.Response(body=body, status=answer.status, content_type=ctype.split(";")[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_hostile_output_filenames_never_escape_the_project(tmp_path: Path) -> None:
    root = make_project(tmp_path / "inside", 2)
    async with Emulator() as emu:
        runner, url = await _hostile_proxy(emu.url)
        try:
            summary = await ImageEngine(fast_settings(**{"comfyui.max_retries": 0})).render(
                RenderRequest(root, backends=(url,))
            )
        finally:
            await runner.cleanup()
    assert summary.counts["failed"] == 2, summary.to_dict()
    assert all("evil.png" in (o.error or "") for o in summary.failed)
    assert not list(tmp_path.rglob("evil.png"))
    assert records(load_project(root)) == []


@pytest.mark.parametrize("sidecars", ["kept", "lost"])
async def test_panels_finished_but_not_saved_are_recovered_not_rerendered(
    tmp_path: Path, sidecars: str
) -> None:
    """A crash after the journal's `done` but before project.json was saved loses nothing; the
    journal carries the whole record, so even a lost sidecar (not fsynced) is no loss."""
    root = make_project(tmp_path, 3)
    async with Emulator() as emu:
        await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
        if sidecars == "lost":
            for sidecar in (root / "assets").rglob("*.json"):
                sidecar.write_bytes(b"")  # what a power cut can leave of an unsynced file
        data = json.loads((root / "project.json").read_text())
        data["asset_manifest"] = {}  # as if the last coalesced save never happened
        for entry in data["shots_index"].values():
            entry.pop("active_asset", None)
        (root / "project.json").write_text(json.dumps(data))
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(emu.url,))
        )
        assert summary.counts["skipped"] == 3, summary.to_dict()
        assert len(emu.executed_prompt_ids) == 3
    _check_project(root, 3)
