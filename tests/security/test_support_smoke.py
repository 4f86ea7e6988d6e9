"""The attack-test tools themselves: the child reports its peak RSS, the hostile server relays."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from tests.security._support import hostile_comfyui, run_storycore


async def test_child_reports_peak_rss_and_exit_code() -> None:
    result = await run_storycore("--version", limit_s=30)
    assert result.rc == 0
    assert 5 < result.peak_rss_mb < 500
    result.assert_bounded(seconds=30)


async def test_hostile_server_overrides_one_route_and_relays_the_rest(tmp_path: Path) -> None:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"evil": True})

    async with (
        hostile_comfyui({"GET /system_stats": stats}, tmp=tmp_path) as (url, _emu),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/system_stats") as answer:
            assert await answer.json() == {"evil": True}
        async with http.get(url + "/queue") as answer:
            assert set(await answer.json()) == {"queue_running", "queue_pending"}
