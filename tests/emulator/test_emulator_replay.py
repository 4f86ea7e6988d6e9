"""Conformance: replay the requests of single-client recordings and compare what comes back.

For every recorded ``POST /prompt`` the emulator must answer with the same status and body
shape, and the socket must receive the same message types in the same order with the same
data shapes (ids and timestamps may differ). ``GET /history/<id>`` must have the same shape.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storycore.comfyui.emulator import Emulator

from ._support import collect_until_done, drain, load_transcript, shape, trivial_prompt


def _segments(
    events: list[dict[str, Any]], client: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each HTTP event with the messages ``client`` received before the next HTTP event."""
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for e in events:
        if e["kind"] == "http":
            out.append((e, []))
        elif e["kind"] == "ws_recv" and e.get("client") == client and out:
            out[-1][1].append(e)
    return out


def _swap_ids(value: Any, mapping: dict[str, str]) -> Any:
    text = json.dumps(value)
    for old, new in mapping.items():
        text = text.replace(old, new)
    return json.loads(text)


async def replay(
    emu: Emulator,
    http: aiohttp.ClientSession,
    events: list[dict[str, Any]],
    client: str = "A",
) -> int:
    """Replay one recording; returns how many prompts were compared."""
    opened = [e for e in events if e["kind"] == "ws_open" and e["client"] == client]
    if opened:
        recorded_sid = opened[0]["url"].split("clientId=")[1]
    else:  # the socket was opened by an earlier recording: take the id from the first prompt
        first = next(e for e in events if e["kind"] == "http" and "request_json" in e)
        recorded_sid = first["request_json"]["client_id"]
    sid = uuid.uuid4().hex
    ids = {recorded_sid: sid}
    compared = 0
    async with http.ws_connect(f"{emu.ws_url}?clientId={sid}") as ws:
        for e in events:
            if e["kind"] == "ws_send" and e["client"] == client:
                await ws.send_json(e["msg"])
                break
            if e["kind"] == "http":
                break
        first_http = next(i for i, e in enumerate(events) if e["kind"] == "http")
        greeting = [
            e for e in events[:first_http] if e["kind"] == "ws_recv" and e["client"] == client
        ]
        got = await drain(ws, 0.2)
        expected_greeting = [e["type"] for e in greeting] if opened else ["status"]
        assert [m["type"] for m in got] == expected_greeting
        for req, recv in _segments(events, client):
            path = _swap_ids(req["path"], ids)
            if req["method"] == "POST" and req["path"] == "/prompt":
                body = _swap_ids(req["request_json"], ids)
                resp = await http.post(f"{emu.url}/prompt", json=body)
                assert resp.status == req["status"], await resp.text()
                data = await resp.json()
                assert shape(data) == shape(req["response_json"])
                ids[req["response_json"]["prompt_id"]] = data["prompt_id"]
                if not recv:
                    continue
                if body.get("client_id") == sid:
                    msgs = await collect_until_done(ws, data["prompt_id"])
                else:
                    msgs = await drain(ws, 0.3)
                assert [m["type"] for m in msgs] == [r["type"] for r in recv], req["request_json"]
                for m, r in zip(msgs, recv, strict=True):
                    assert shape(m["data"]) == shape(r["data"]), (m, r)
                    if m["type"] in ("executing", "executed", "execution_cached"):
                        expected = _swap_ids(r["data"], ids)
                        expected.pop("timestamp", None)
                        assert expected == {k: v for k, v in m["data"].items() if k != "timestamp"}
                compared += 1
            elif req["method"] == "GET" and req["path"].startswith("/history/"):
                resp = await http.get(emu.url + path)
                assert resp.status == req["status"]
                data = await resp.json()
                assert shape(data) == shape(_swap_ids(req["response_json"], ids))
                await drain(ws, 0.0)
    return compared


@pytest.mark.parametrize(
    "name", ["ws_a_success.jsonl", "ws_f_custom_prompt_id.jsonl", "ws_d_execution_error.jsonl"]
)
async def test_replay_fresh_server(
    emu: Emulator, http: aiohttp.ClientSession, reference_dir: Path, name: str
) -> None:
    events = load_transcript(reference_dir, name)
    assert await replay(emu, http, events) >= 1


async def test_replay_cached_resubmit(
    emu: Emulator, http: aiohttp.ClientSession, reference_dir: Path
) -> None:
    # The recording ran right after ws_a_success: the same graph is already cached.
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": trivial_prompt(size=256)})
    pid = (await resp.json())["prompt_id"]
    for _ in range(500):
        if pid in emu.executor.history:
            break
        await asyncio.sleep(0.01)
    events = load_transcript(reference_dir, "ws_b_cached.jsonl")
    assert await replay(emu, http, events) == 2
