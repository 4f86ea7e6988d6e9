"""doctor and preflight against a server whose ``/object_info`` is hostile or broken.

Both build their clients from the settings like ``generate-images`` does (the size limits and
the total deadline of one request), a deadline keeps the client's own words, and doctor never
calls a server whose node list it could not read a success. Before: doctor and preflight used
the built-in limits whatever the settings said, preflight reworded a 3 s request deadline as
"within 30 s", and doctor printed "None node classes" and exited 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from storycore.errors import NoServerReachable
from tests.engine.conftest import make_project
from tests.security._support import ChildResult, Handler, hostile_comfyui, run_storycore
from tests.security.test_hostile_http import FAST_ENV, streaming
from tests.security.test_hostile_http_limits import _endless_json, _trickle

COMFYUI_EXIT = NoServerReachable.exit_code  # 4, a ComfyUI problem


async def _run(
    tmp_path: Path,
    overrides: Mapping[str, Handler],
    command: str,
    *extra: str,
    env: Mapping[str, str] | None = None,
    config: str | None = None,
) -> ChildResult:
    """``storycore COMMAND --backend URL`` (preflight: of a one-shot project) against a
    ComfyUI whose ``overrides`` routes are hostile; ``config`` is a ``--config`` file's text."""
    async with hostile_comfyui(overrides, tmp=tmp_path) as (url, _emu):
        args = [command, "--backend", url, *extra]
        if command == "preflight":
            args += ["--project", str(make_project(tmp_path / "project", 1))]
        if config is not None:
            path = tmp_path / "config.toml"
            path.write_text(config, encoding="utf-8")
            args += ["--config", str(path)]
        return await run_storycore(*args, env={**FAST_ENV, **(env or {})}, limit_s=60)


def _clean(result: ChildResult, rc: int, *words: str) -> None:
    result.assert_bounded(seconds=30)
    assert result.rc == rc, result.output[-3000:]
    for bad in ("Traceback", "unexpected", "None node classes"):
        assert bad not in result.output, result.output[-3000:]
    for word in words:
        assert word in result.output, result.output[-3000:]


def _answer(body: str, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")

    return handler


BROKEN = {
    "endless": (lambda: streaming(_endless_json(b'{"KSampler": "'), "application/json"), "64 MiB"),
    "500": (lambda: _answer('{"error": "boom"}', status=500), "500"),
    "bad JSON": (lambda: _answer('{"KSampler": {'), "JSON"),
    "not an object": (lambda: _answer("[1, 2, 3]"), "/object_info"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
async def test_doctor_fails_when_the_node_list_cannot_be_read(tmp_path: Path, kind: str) -> None:
    make, why = BROKEN[kind]
    result = await _run(tmp_path, {"GET /object_info": make()}, "doctor")
    _clean(result, COMFYUI_EXIT, "GET /object_info", why)
    assert "No problems found" not in result.output, result.output[-3000:]


async def test_doctor_json_says_the_node_list_failed(tmp_path: Path) -> None:
    honest = await _run(tmp_path / "honest", {}, "doctor", "--json")
    report: dict[str, Any] = json.loads(honest.stdout)
    assert report["server"]["error"] is None and report["server"]["node_classes"] > 10
    assert honest.rc != COMFYUI_EXIT, honest.output[-3000:]

    broken = {"GET /object_info": _answer('{"error": "boom"}', 500)}
    result = await _run(tmp_path / "broken", broken, "doctor", "--json")
    _clean(result, COMFYUI_EXIT)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    server = report["server"]
    assert server["reachable"] is True  # it answered /system_stats ...
    assert server["failed"] == "GET /object_info"  # ... but not its node list
    assert "HTTP 500 from /object_info" in server["error"]
    assert server["node_classes"] is None
    failed = [p for p in report["problems"] if p["code"] == "server_incomplete"]
    assert len(failed) == 1 and failed[0]["severity"] == "error", report["problems"]
    assert "GET /object_info" in failed[0]["message"] and "500" in failed[0]["message"]


ONE_MIB = "[comfyui]\nmax_response_mb = { object_info = 1 }\n"


@pytest.mark.parametrize("command", ["doctor", "preflight"])
async def test_the_configured_size_limit_holds(tmp_path: Path, command: str) -> None:
    """comfyui.max_response_mb.object_info = 1: cut off at 1 MiB, as generate-images does."""
    endless = streaming(_endless_json(b'{"KSampler": "'), "application/json")
    result = await _run(tmp_path, {"GET /object_info": endless}, command, config=ONE_MIB)
    _clean(result, COMFYUI_EXIT, "GET /object_info is larger than 1 MiB")
    if command == "doctor":  # the fix of its problem is the client's hint
        assert "raise comfyui.max_response_mb.object_info" in result.output, result.output


@pytest.mark.parametrize("command", ["doctor", "preflight"])
async def test_a_trickled_node_list_ends_at_the_request_deadline(
    tmp_path: Path, command: str
) -> None:
    """comfyui.request_deadline = 3: the client's own message, after about 3 s (before:
    preflight said "within 30 s", doctor waited 20 s and then exited 0)."""
    result = await _run(
        tmp_path,
        {"GET /object_info": _trickle()},
        command,
        env={"STORYCORE_COMFYUI__REQUEST_DEADLINE": "3"},
    )
    _clean(result, COMFYUI_EXIT, "GET /object_info within 3 s")
    assert "within 30 s" not in result.output, result.output[-3000:]
    result.assert_bounded(seconds=15)


async def test_doctor_passes_over_a_server_without_a_node_list(tmp_path: Path) -> None:
    """Two configured backends, the first without a node list: doctor checks the second, as
    generate-images would render there, and names why it passed over the first."""
    broken = {"GET /object_info": _answer('{"error": "boom"}', 500)}
    async with (
        hostile_comfyui(broken, tmp=tmp_path / "a") as (first, _a),
        hostile_comfyui({}, tmp=tmp_path / "b") as (second, _b),
    ):
        config = tmp_path / "config.toml"
        config.write_text(f'backends = ["{first}", "{second}"]\n', encoding="utf-8")
        result = await run_storycore(
            "doctor", "--json", "--config", str(config), env=FAST_ENV, limit_s=60
        )
    _clean(result, result.rc)
    assert result.rc in (0, 1), result.output[-3000:]  # whatever else it finds: not ComfyUI's
    server = json.loads(result.stdout)["server"]
    assert server["url"] == second and server["error"] is None, server
    assert server["tried"] == [
        {"url": first, "why": "HTTP 500 from /object_info: the server failed (see its log)"}
    ]
