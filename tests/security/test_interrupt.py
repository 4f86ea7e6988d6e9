"""Ctrl-C always works: every phase of ``generate-images`` ends within a bound, the second Ctrl-C
exits at once.

A server can hold a connection open without answering (connect), answer ``/system_stats`` and
then never send its node list (the preflight's ``/object_info``), or hang the calls a cancel
makes. Each test runs the CLI in a child process, sends it SIGINT in that phase and measures how
long it takes to end: exit 130 and one line saying what was interrupted, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from storycore.emulator import EmulatorOptions
from tests.engine.conftest import make_project
from tests.security._support import REPO_ROOT, hostile_comfyui

# Long waits everywhere, so only Ctrl-C can end these runs quickly.
PATIENT_ENV = {
    "STORYCORE_COMFYUI__HEALTH_CHECK_TIMEOUT": "60",
    "STORYCORE_COMFYUI__READ_TIMEOUT": "60",
    "STORYCORE_COMFYUI__CONNECT_TIMEOUT": "60",
    "STORYCORE_COMFYUI__GRACEFUL_SHUTDOWN": "60",
    "STORYCORE_RENDER__STEPS": "20",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "64",
}
BOUND_S = 8.0  # "within a few seconds" (the run gives itself 5 s to unwind)
AT_ONCE_S = 3.0


class Child:
    """``storycore ARGS`` in a child process, its stdout read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, tmp: Path) -> Child:
        env = {
            **os.environ,
            **PATIENT_ENV,
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "storycore",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    async def next_event(self, name: str, limit_s: float = 30.0) -> dict[str, object]:
        """Read ``--json`` events until one named ``name`` comes."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(limit_s):
            while True:
                line = await self.proc.stdout.readline()
                assert line, f"the CLI ended before {name!r}: {await self._stderr()}"
                event = json.loads(line)
                if event.get("event") == name:
                    return dict(event)

    async def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")

    def interrupt(self) -> float:
        self.proc.send_signal(signal.SIGINT)
        return time.monotonic()

    async def ended(self, limit_s: float) -> tuple[int, str, str]:
        """Wait up to ``limit_s`` for the exit; fail (and kill it) if it takes longer."""
        try:
            async with asyncio.timeout(limit_s):
                out, err = await self.proc.communicate()
        except TimeoutError:
            self.proc.kill()
            out, err = await self.proc.communicate()
            raise AssertionError(
                f"still running {limit_s} s after Ctrl-C:\n{(out + err).decode()[-2000:]}"
            ) from None
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def assert_interrupted(rc: int, err: str, took: float, bound: float) -> None:
    assert rc == 130, err
    assert took < bound, f"took {took:.1f} s after Ctrl-C"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "Ctrl-C" in line]
    assert len(lines) == 1, err  # one line says it, once


async def interrupt_when(child: Child, ready: asyncio.Event) -> str:
    """Ctrl-C once ``ready`` is set (and the child is inside the wait); asserts the child ended
    with exit 130 within the bound, saying so in one line. Returns its stderr."""
    async with asyncio.timeout(30):
        await ready.wait()
    await asyncio.sleep(0.3)
    sent = child.interrupt()
    rc, _out, err = await child.ended(BOUND_S + 10)
    assert_interrupted(rc, err, time.monotonic() - sent, BOUND_S)
    return err


@asynccontextmanager
async def silent_server(accepted: asyncio.Event) -> AsyncIterator[str]:
    """Accepts TCP connections and never answers a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ctrl_c_while_connecting_ends_at_once(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    accepted = asyncio.Event()
    async with silent_server(accepted) as url:
        child = await Child.start(
            "generate-images", "-p", str(root), "--backend", url, tmp=tmp_path
        )
        err = await interrupt_when(child, accepted)
    assert "connect" in err


def _stuck_object_info(asked: asyncio.Event) -> dict[str, object]:
    async def stuck(_request: web.Request) -> web.StreamResponse:
        asked.set()
        await asyncio.sleep(120)
        return web.Response()

    return {"GET /object_info": stuck}


async def test_ctrl_c_while_the_node_list_never_comes_ends_at_once(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    asked = asyncio.Event()
    async with hostile_comfyui(_stuck_object_info(asked), tmp=tmp_path) as (url, _emu):
        child = await Child.start(
            "generate-images", "-p", str(root), "--backend", url, tmp=tmp_path
        )
        await interrupt_when(child, asked)


async def test_ctrl_c_in_the_preflight_command_says_so(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    asked = asyncio.Event()
    async with hostile_comfyui(_stuck_object_info(asked), tmp=tmp_path) as (url, _emu):
        child = await Child.start(
            "preflight", "-p", str(root), "--backend", url, "--timeout", "60", tmp=tmp_path
        )
        await interrupt_when(child, asked)


async def test_second_ctrl_c_exits_at_once_while_the_server_hangs_the_cancel(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 2)
    hang = asyncio.Event()
    options = EmulatorOptions(
        output_dir=tmp_path / "server-output",
        input_dir=tmp_path / "server-input",
        temp_dir=tmp_path / "server-tmp",
        step_seconds=1.0,  # 20 steps: each panel would take 20 s
    )
    upstream: dict[str, str] = {}

    async def queue(_request: web.Request) -> web.StreamResponse:
        if hang.is_set():  # after the first Ctrl-C, the cancel's GET /queue never answers
            await asyncio.sleep(120)
        async with aiohttp.ClientSession() as http, http.get(upstream["url"] + "/queue") as got:
            return web.json_response(await got.json())

    async with hostile_comfyui({"GET /queue": queue}, tmp=tmp_path, options=options) as (
        url,
        emu,
    ):
        upstream["url"] = emu.url
        child = await Child.start(
            "generate-images", "-p", str(root), "--backend", url, "--json", tmp=tmp_path
        )
        await child.next_event("panel_submitted")
        await asyncio.sleep(0.5)
        hang.set()
        child.interrupt()  # first: stop submitting, wait (up to 60 s) for the running panel
        await child.next_event("notice", limit_s=BOUND_S)
        sent = child.interrupt()  # second: out now
        rc, _out, err = await child.ended(AT_ONCE_S + 10)
    took = time.monotonic() - sent
    assert rc == 130, err
    assert took < AT_ONCE_S, f"the second Ctrl-C took {took:.1f} s"
    assert "Traceback" not in err
