"""One WebSocket kept open to a server: a fresh clientId per connection, exponential backoff,
frames parsed into typed events and handed to a callback with their size on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from storycore.comfyui.client import ComfyUIClient
from storycore.comfyui.events import Event, parse_binary_frame, parse_text_frame

__all__ = ["WebSocketFeed"]

_log = logging.getLogger(__name__)
# The first message on each connection: ComfyUI reads feature flags only from a client's first
# message (server.py websocket_handler @ 002c3fb9) and then sends previews as type-4 frames
# naming their prompt and node (comfy_execution/progress.py @ 1b71f275), not type 1.
FEATURE_FLAGS: dict[str, Any] = {
    "type": "feature_flags",
    "data": {"supports_preview_metadata": True},
}


class WebSocketFeed:
    """Connects, reads, reconnects until :meth:`close`. ``on_event(event, size)`` gets every
    parsed frame and its size in bytes (characters for text); a frame that cannot be parsed is
    skipped. ``on_gap`` is called after each connection ends (events may have been missed)."""

    def __init__(
        self,
        client: ComfyUIClient,
        on_event: Callable[[Event, int], None],
        on_gap: Callable[[], None],
    ) -> None:
        self.client = client
        self.timeouts = client.timeouts
        self._on_event = on_event
        self._on_gap = on_gap
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.client_id: str | None = None
        self.last_message = 0.0
        self.connections = 0
        self.announce: dict[str, Any] | None = FEATURE_FLAGS  # None: announce nothing
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def _pause(self, delay: float) -> tuple[float, float]:
        """The jittered wait before the next attempt, and the next delay."""
        return delay * (1 + random.random() / 4), min(delay * 2, self.timeouts.reconnect_max)

    async def run(self, first: asyncio.Future[None]) -> None:
        """Connect and read until closed; ``first`` resolves after the first attempt."""
        delay = self.timeouts.reconnect_initial
        while not self._closed:
            client_id = self.client.rotate_client_id()
            try:
                ws = await self.client.transport.ws_connect(client_id)
            except Exception as exc:  # ComfyUIError, or a bug: either way retry later
                _log.info("WebSocket to %s unavailable: %s", self.client.address.url, exc)
                if not first.done():
                    first.set_result(None)
                wait, delay = self._pause(delay)
                await asyncio.sleep(wait)
                continue
            self._ws, self.client_id = ws, client_id
            self.connections += 1
            self.last_message = time.monotonic()
            delay = self.timeouts.reconnect_initial
            if not first.done():
                first.set_result(None)
            else:
                self._on_gap()  # reconnected: what finished during the gap must be looked up
            try:
                if self.announce is not None:
                    await ws.send_json(self.announce)
                await self._read(ws)
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
                _log.info("WebSocket to %s failed: %s", self.client.address.url, exc)
            finally:
                self._ws = None
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.timeouts.connect):
                        await ws.close()
            self._on_gap()
            if not self._closed:
                wait, delay = self._pause(delay)
                await asyncio.sleep(wait)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            self.last_message = time.monotonic()
            event: Event | None = None
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            try:
                if message.type == aiohttp.WSMsgType.TEXT:
                    event = parse_text_frame(message.data)
                else:
                    event = parse_binary_frame(message.data)
            except Exception:  # the parsers never raise; a frame is never worth the connection
                _log.debug("a WebSocket frame could not be parsed", exc_info=True)
            if event is not None:
                try:
                    self._on_event(event, len(message.data))
                except Exception:  # one bad event must not cost the connection
                    _log.debug("handling a WebSocket frame failed", exc_info=True)

    async def close(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.connect):
                    await ws.close()
