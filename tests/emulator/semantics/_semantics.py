"""Run one prompt on an in-process emulator and return its WebSocket messages and history."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from storycore.emulator import Emulator

from .._support import collect_until_done, drain


async def run_prompt(
    emu: Emulator, http: aiohttp.ClientSession, prompt: dict[str, Any], limit_s: float = 20.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages to our client, history entry) for ``prompt``; asserts it was accepted."""
    client = uuid.uuid4().hex
    async with http.ws_connect(f"{emu.ws_url}?clientId={client}") as ws:
        await drain(ws, 0.05)
        resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt, "client_id": client})
        assert resp.status == 200, await resp.text()
        pid = str((await resp.json())["prompt_id"])
        msgs = await collect_until_done(ws, pid, limit_s)
    history = await (await http.get(f"{emu.url}/history/{pid}")).json()
    return msgs, history[pid]


def failure(msgs: list[dict[str, Any]]) -> str:
    """The execution_error of a run, for an assert message."""
    errors = [m["data"] for m in msgs if m["type"] == "execution_error"]
    return str(errors[0]["exception_message"]) if errors else ""
