"""Shared tools for the attack tests: a bounded child ``storycore`` and hostile servers.

* :func:`run_storycore` runs the CLI in a child process (through :mod:`tests.security._child`)
  with a wall-clock bound and a memory ceiling, and returns its exit code, output and peak RSS.
  Every attack test asserts both bounds: the command ended in time and stayed under
  :data:`RSS_LIMIT_MB`.
* :func:`hostile_comfyui` serves a mostly honest ComfyUI on loopback: every route is forwarded
  to a real :class:`~storycore.emulator.Emulator` except the ones the test overrides
  with its own inline handlers (``{"GET /system_stats": handler}``), which is where the attack
  lives.
* :func:`serve` serves any aiohttp application on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, web

from storycore.emulator import Emulator, EmulatorOptions

RSS_LIMIT_MB = 500
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ChildResult:
    rc: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def assert_bounded(self, *, seconds: float | None = None) -> None:
        """The child stayed under the memory limit (and, if given, finished within ``seconds``)."""
        assert self.peak_rss_mb < RSS_LIMIT_MB, (
            f"peak RSS {self.peak_rss_mb:.0f} MB >= {RSS_LIMIT_MB} MB\n{self.output[-3000:]}"
        )
        if seconds is not None:
            assert self.seconds < seconds, f"took {self.seconds:.1f} s\n{self.output[-3000:]}"


async def run_storycore(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    limit_s: float = 60.0,
    stdin: bytes | None = None,
    address_space_mb: int = 4096,
) -> ChildResult:
    """``storycore ARGS`` in a child process; killed (and the test failed) after ``limit_s``.

    The child reads no user config unless ``env`` points ``STORYCORE_CONFIG``/``XDG_CONFIG_HOME``
    somewhere: ``XDG_CONFIG_HOME`` is set to an empty temporary folder by default.
    """
    with tempfile.TemporaryDirectory(prefix="storycore-child-") as scratch:
        rss_file = Path(scratch) / "rss"
        child_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(Path(scratch) / "config"),
            "STORYCORE_TEST_RSS_FILE": str(rss_file),
            "STORYCORE_TEST_AS_MB": str(address_space_mb),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            **(env or {}),
        }
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.security._child",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env,
            cwd=str(cwd) if cwd else None,
        )
        try:
            async with asyncio.timeout(limit_s):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(
                f"storycore {' '.join(args)} did not finish within {limit_s} s:\n"
                f"{(out + err).decode(errors='replace')[-3000:]}"
            ) from None
        seconds = time.monotonic() - started
        peak_kb = int(rss_file.read_text()) if rss_file.exists() else 0
    assert proc.returncode is not None
    return ChildResult(
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        peak_kb / 1024,
        seconds,
    )


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hostile_comfyui(
    overrides: Mapping[str, Handler],
    *,
    tmp: Path,
    options: EmulatorOptions | None = None,
) -> AsyncIterator[tuple[str, Emulator]]:
    """A loopback ComfyUI whose routes ``"METHOD /path"`` in ``overrides`` are the attacker's.

    Every other request, the WebSocket included, is relayed to a real emulator, so the client
    meets an otherwise faithful server. Yields ``(url, emulator)``.
    """
    opts = options or EmulatorOptions(
        output_dir=tmp / "server-output", input_dir=tmp / "server-input", temp_dir=tmp / "tmp"
    )
    async with Emulator(opts) as emulator, ClientSession() as session:

        async def relay(request: web.Request) -> web.StreamResponse:
            handler = overrides.get(f"{request.method} {request.path}") or overrides.get(
                f"* {request.path}"
            )
            if handler is not None:
                return await handler(request)
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await relay_ws(request, session, emulator.url)
            async with session.request(
                request.method,
                emulator.url + request.path_qs,
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "")},
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                ctype = answer.headers.get("Content-Type", "application/octet-stream")
                return web.Response(
                    body=body, status=answer.status, content_type=ctype.split(";")[0]
                )

        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", relay)
        async with serve(app) as url:
            yield url, emulator


async def relay_ws(
    request: web.Request,
    session: ClientSession,
    upstream: str,
    *,
    before: Callable[[], Iterable[str | bytes]] | None = None,
    after_text: Callable[[str], Iterable[str | bytes]] | None = None,
) -> web.WebSocketResponse:
    """Relay the WebSocket of ``request`` to the server at ``upstream`` (``http://...``).

    ``before()`` may return extra frames sent to the client ahead of each relayed frame;
    ``after_text(text)`` extra frames sent right after a relayed text frame (the attacker's
    frames, placed where a real server's would be).
    """
    from aiohttp import WSMsgType

    down_ws = web.WebSocketResponse(heartbeat=None)
    await down_ws.prepare(request)

    async def send(frames: Iterable[str | bytes]) -> None:
        for extra in frames:
            if isinstance(extra, bytes):
                await down_ws.send_bytes(extra)
            else:
                await down_ws.send_str(extra)

    async with session.ws_connect(upstream.replace("http", "ws", 1) + request.path_qs) as up_ws:

        async def down() -> None:
            async for msg in up_ws:
                if before is not None:
                    await send(before())
                if msg.type is WSMsgType.TEXT:
                    await down_ws.send_str(msg.data)
                    if after_text is not None:
                        await send(after_text(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    await down_ws.send_bytes(msg.data)
                else:
                    break

        async def up() -> None:
            async for msg in down_ws:
                if msg.type is WSMsgType.TEXT:
                    await up_ws.send_str(msg.data)

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await down_ws.close()
    return down_ws
