"""Helpers for the emulator tests: recordings, JSON shapes, WebSocket collection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests._recordings import load_reference_json, load_transcript

__all__ = ["load_reference_json", "load_transcript"]


def shape(value: Any) -> Any:
    """Keys and value types, recursively; list items are merged into one set of shapes."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(shape(v), sort_keys=True) for v in value})]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def recorded_types(events: list[dict[str, Any]], client: str) -> list[str]:
    return [e["type"] for e in events if e["kind"] == "ws_recv" and e.get("client") == client]


async def collect_until_done(
    ws: aiohttp.ClientWebSocketResponse, prompt_id: str, limit_s: float = 10.0
) -> list[dict[str, Any]]:
    """JSON messages up to and including ``executing`` with ``node: null`` for ``prompt_id``."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - loop.time()))
        if msg.type == aiohttp.WSMsgType.BINARY:
            out.append({"type": "<binary>", "data": msg.data})
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        out.append(data)
        d = data.get("data", {})
        if (
            data["type"] == "executing"
            and d.get("node") is None
            and d.get("prompt_id") == prompt_id
        ):
            return out


async def drain(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.1) -> list[dict[str, Any]]:
    """Every JSON message that arrives within ``seconds``."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(json.loads(msg.data))
        elif msg.type == aiohttp.WSMsgType.BINARY:
            out.append({"type": "<binary>", "data": msg.data})
        else:
            break
    return out


def trivial_prompt(
    prefix: str = "storycore_test", color: int = 3368652, size: int = 64
) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }
