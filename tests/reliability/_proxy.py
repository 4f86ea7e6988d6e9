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

from aiohttp import ClientSession, web

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
    from tests.security._support import relay_ws

    def before() -> Sequence[str | bytes]:
        extras = proxy.inject()
        proxy.injected += len(extras)
        return extras

    return await relay_ws(request, session, proxy.upstream, before=before)


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
