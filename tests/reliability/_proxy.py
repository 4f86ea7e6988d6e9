"""A loopback proxy in front of an emulator that can delay answers and inject WebSocket frames.

HTTP requests are forwarded upstream first (so the server did the work) and the answer is
held back ``delay(method, path)`` seconds: for the client that is a timeout on a request that
reached the server, the ambiguous case. The WebSocket is relayed both ways; ``inject()`` may
return extra frames (text or bytes) sent to the client before each relayed one, or the
WebSocket can be refused altogether (``websocket=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import ClientSession, WSMsgType, web

Delay = Callable[[str, str], float]
Inject = Callable[[], Sequence[str | bytes]]


@dataclass
class Proxy:
    upstream: str
    delay: Delay = lambda method, path: 0.0
    inject: Inject = lambda: ()
    websocket: bool = True  # False: refuse /ws, so the client polls /queue and /history
    url: str = ""
    stop: Callable[[], Awaitable[None]] | None = None  # set while running: the proxy goes away
    delayed: list[str] = field(default_factory=list)
    injected: int = 0


async def _relay_ws(
    proxy: Proxy, request: web.Request, session: ClientSession
) -> web.StreamResponse:
    client_ws = web.WebSocketResponse(heartbeat=None)
    await client_ws.prepare(request)
    upstream_url = proxy.upstream.replace("http", "ws", 1) + request.path_qs
    async with session.ws_connect(upstream_url) as server_ws:

        async def down() -> None:
            async for msg in server_ws:
                for extra in proxy.inject():
                    proxy.injected += 1
                    if isinstance(extra, bytes):
                        await client_ws.send_bytes(extra)
                    else:
                        await client_ws.send_str(extra)
                if msg.type is WSMsgType.TEXT:
                    await client_ws.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await client_ws.send_bytes(msg.data)
                else:
                    break

        async def up() -> None:
            async for msg in client_ws:
                if msg.type is WSMsgType.TEXT:
                    await server_ws.send_str(msg.data)

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await client_ws.close()
    return client_ws


@contextlib.asynccontextmanager
async def proxy_for(proxy: Proxy) -> AsyncIterator[Proxy]:
    session = ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path in ("/ws", "/api/ws") and request.headers.get("Upgrade", "").lower() == (
            "websocket"
        ):
            if not proxy.websocket:
                return web.Response(status=404, text="no websocket here")
            return await _relay_ws(proxy, request, session)
        async with session.request(
            request.method,
            proxy.upstream + request.path_qs,
            data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            body = await answer.read()
            ctype = answer.headers.get("Content-Type", "application/octet-stream")
            status = answer.status
        seconds = proxy.delay(request.method, request.path)
        if seconds > 0:
            proxy.delayed.append(f"{request.method} {request.path}")
            await asyncio.sleep(seconds)
        return web.Response(body=body, status=status, content_type=ctype.split(";")[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    stopped = False

    async def stop() -> None:  # like a server that died: connections cut, port refused
        nonlocal stopped
        if not stopped:
            stopped = True
            await runner.cleanup()

    proxy.stop = stop
    try:
        yield proxy
    finally:
        await stop()
        await session.close()
