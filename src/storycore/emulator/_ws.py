"""The WebSocket hub: ``/ws?clientId=`` with ComfyUI's delivery rules.

* ``status`` (with ``sid``) first; a first JSON message of type ``feature_flags`` is answered
  with the server's flags.
* A message addressed to a client id goes only to the socket registered under that id; one
  addressed to ``None`` goes to every socket.
* A second socket with the same ``clientId`` replaces the first; when the first one then
  closes, the id is deregistered (the new socket receives nothing more), as in ComfyUI.
* Each socket has its own outgoing queue and sender task, so a slow or stalled client never
  blocks the executor. Faults can stall every sender or abort every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["SERVER_FEATURES", "SocketHub"]

_log = logging.getLogger(__name__)

SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}

BINARY_PREVIEW_IMAGE = 1
BINARY_PREVIEW_WITH_METADATA = 4
_FORMAT_CODES = {"JPEG": 1, "PNG": 2}
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}

_SENDER_QUEUE_MAX = 200_000


class _Pong:
    """A pong owed to the client; queued so a stalled socket answers pings late, too."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_Item = str | bytes | _Pong


class _Client:
    __slots__ = ("flags", "queue", "sender", "sid", "transport", "ws")

    def __init__(self, sid: str, ws: web.WebSocketResponse, transport: Any) -> None:
        self.sid = sid
        self.ws = ws
        self.transport = transport
        self.flags: dict[str, Any] = {}
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(_SENDER_QUEUE_MAX)
        self.sender: asyncio.Task[None] | None = None


class SocketHub:
    """Every open socket, addressed by client id."""

    def __init__(self, queue_info: Callable[[], dict[str, Any]]) -> None:
        self._queue_info = queue_info
        self._sockets: dict[str, _Client] = {}
        self._all: set[_Client] = set()
        self._stall_until = 0.0
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._dropping = False
        # The node the executor is running for a client id (re-sent on reconnect, like ComfyUI).
        self.current_client_id: str | None = None
        self.last_node_id: str | None = None
        # The flags a ``feature_flags`` message is answered with (the profile's, see _server.py).
        self.server_features: dict[str, Any] = dict(SERVER_FEATURES)

    # ---- sending -----------------------------------------------------------------------
    def _enqueue(self, client: _Client, item: _Item) -> None:
        try:
            client.queue.put_nowait(item)
        except asyncio.QueueFull:  # a client that never reads; drop like a dead socket
            _log.warning("websocket %s is not reading; message dropped", client.sid)

    def send(self, event: str, data: Any, sid: str | None) -> None:
        """Queue one JSON message for ``sid`` (``None``: every socket)."""
        text = json.dumps({"type": event, "data": data})
        if sid is None:
            for client in list(self._sockets.values()):
                self._enqueue(client, text)
        else:
            target = self._sockets.get(sid)
            if target is not None:
                self._enqueue(target, text)

    def wants_metadata(self, sid: str | None) -> bool:
        client = self._sockets.get(sid) if sid is not None else None
        return bool(client and client.flags.get("supports_preview_metadata") is True)

    def send_image(
        self, fmt: str, image: bytes, sid: str | None, metadata: dict[str, Any] | None
    ) -> None:
        """Queue a binary preview frame in the real layout (type 1, or type 4 with metadata)."""
        targets = list(self._sockets.values()) if sid is None else []
        if sid is not None and (client := self._sockets.get(sid)) is not None:
            targets = [client]
        for client in targets:
            if metadata is not None and client.flags.get("supports_preview_metadata") is True:
                meta = json.dumps({**metadata, "image_type": _MIME[fmt]}).encode("utf-8")
                frame = struct.pack(">II", BINARY_PREVIEW_WITH_METADATA, len(meta)) + meta + image
            else:
                frame = struct.pack(">II", BINARY_PREVIEW_IMAGE, _FORMAT_CODES[fmt]) + image
            self._enqueue(client, frame)

    async def _sender(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await client.queue.get()
            if item is None:
                return
            delay = self._stall_until - loop.time()
            if delay > 0 and not self._unstalled.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay + 1.0):
                        await self._unstalled.wait()
            try:
                if isinstance(item, _Pong):
                    await client.ws.pong(item.data)
                elif isinstance(item, bytes):
                    await client.ws.send_bytes(item)
                else:
                    await client.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # ---- faults ------------------------------------------------------------------------
    def stall(self, seconds: float) -> None:
        """Hold every outgoing message and pong for ``seconds`` (sent afterwards, in order)."""
        loop = asyncio.get_running_loop()
        self._stall_until = max(self._stall_until, loop.time() + seconds)
        self._unstalled.clear()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._stall_timer = loop.call_at(self._stall_until, self._unstalled.set)

    def drop_all(self) -> int:
        """Abort every connection without a close frame, like a network failure."""
        n = 0
        for client in list(self._all):
            if client.transport is not None:
                client.transport.abort()
                n += 1
        return n

    def connected_ids(self) -> list[str]:
        return list(self._sockets)

    async def close_all(self) -> None:
        async def close(client: _Client) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.ws.close()
            if client.sender is not None:
                client.sender.cancel()

        await asyncio.gather(*(close(c) for c in list(self._all)))

    # ---- the route ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Pings are answered through the sender queue, so a stall also delays the pongs.
        ws = web.WebSocketResponse(heartbeat=None, autoping=False, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        client = _Client(sid, ws, request.transport)
        self._sockets[sid] = client
        self._all.add(client)
        client.sender = asyncio.create_task(self._sender(client), name=f"ws-sender-{sid}")
        try:
            self.send("status", {"status": self._queue_info(), "sid": sid}, sid)
            if self.current_client_id == sid and self.last_node_id is not None:
                self.send("executing", {"node": self.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        _log.warning("invalid json on websocket %s", sid)
                        continue
                    if (
                        first
                        and isinstance(data, dict)
                        and data.get("type") == "feature_flags"
                        and isinstance(data.get("data"), dict)
                    ):
                        client.flags = dict(data["data"])
                        self.send("feature_flags", dict(self.server_features), sid)
                    first = False
                elif msg.type == WSMsgType.PING:
                    self._enqueue(client, _Pong(msg.data))
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            # ComfyUI pops the id even when a newer socket has taken it over.
            self._sockets.pop(sid, None)
            self._all.discard(client)
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            if client.sender is not None and not client.sender.done():
                client.sender.cancel()
        return ws
