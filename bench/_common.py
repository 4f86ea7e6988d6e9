"""Shared helpers: emulator child processes, projects of N panels, fast settings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from storycore.config import Settings, resolve_settings
from storycore.project import init_project

# What every benchmark renders with: a small image and 4 emulated sampler steps.
STEPS = 4
LONG_SIDE = 128

BENCH_SETTINGS: dict[str, Any] = {
    "comfyui.health_check_interval": 1.0,
    "comfyui.health_check_timeout": 5.0,
    "comfyui.connect_timeout": 5.0,
    "comfyui.read_timeout": 30.0,
    "comfyui.startup_timeout": 30.0,
    "render.steps": STEPS,
    "render.render_long_side": LONG_SIDE,
}


def bench_settings(**overrides: Any) -> Settings:
    cli = dict(BENCH_SETTINGS)
    cli.update(overrides)
    return resolve_settings(env={}, read_user_config=False, cli=cli).settings


def make_project(base: Path, shots: int, name: str = "Bench") -> Path:
    """A project with ``shots`` text-to-image shots (shot_0001...)."""
    root = init_project(name, base)
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text())
    template = board["shots"][0]
    board["shots"] = []
    for n in range(1, shots + 1):
        shot = json.loads(json.dumps(template))
        shot.update(shot_id=f"shot_{n:04d}", shot_number=n, title=f"Panel {n}")
        shot["prompt_modules"]["subject"] = f"panel number {n}, a lighthouse"
        shot["prompt_modules"]["technical"]["steps"] = None
        board["shots"].append(shot)
    board_path.write_text(json.dumps(board, indent=2))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorProcess:
    proc: subprocess.Popen[bytes]
    url: str
    output_dir: Path


async def wait_until_up(url: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(
                    url + "/system_stats", timeout=aiohttp.ClientTimeout(total=1)
                ) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"emulator at {url} did not start in {limit:g} s")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def emulators(
    count: int, work: Path, *, step_seconds: float, extra: tuple[str, ...] = ()
) -> AsyncIterator[list[EmulatorProcess]]:
    """``count`` emulators, each its own process (like real ComfyUI servers)."""
    procs: list[EmulatorProcess] = []
    try:
        for i in range(count):
            port = free_port()
            base = work / f"emu{i}"
            out = base / "output"
            cmd = [
                sys.executable,
                "-m",
                "storycore.emulator",
                "--port",
                str(port),
                "--step-seconds",
                str(step_seconds),
                "--output-directory",
                str(out),
                "--input-directory",
                str(base / "input"),
                "--temp-directory",
                str(base / "temp"),
                *extra,
            ]
            proc = subprocess.Popen(  # noqa: ASYNC220 - setup, before any timing
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
            )
            procs.append(EmulatorProcess(proc, f"http://127.0.0.1:{port}", out))
        for emu in procs:
            await wait_until_up(emu.url)
        yield procs
    finally:
        for emu in procs:
            if emu.proc.poll() is None:
                emu.proc.send_signal(signal.SIGTERM)
        for emu in procs:
            try:
                emu.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                emu.proc.kill()
                emu.proc.wait()


async def history(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/history", params={"max_items": "100000"}) as r,
    ):
        data: dict[str, Any] = await r.json()
        return data


def busy_seconds(entries: dict[str, Any]) -> tuple[float, float, float]:
    """(sum of execution times, first start, last end) from history ``status.messages``.

    Timestamps are the emulator's wall clock in ms (``time.time()``), as in ComfyUI.
    """
    total = 0.0
    first = float("inf")
    last = 0.0
    for entry in entries.values():
        start = end = None
        for name, data in entry.get("status", {}).get("messages", []):
            if name == "execution_start":
                start = data["timestamp"] / 1000
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data["timestamp"] / 1000
        if start is not None and end is not None:
            total += end - start
            first = min(first, start)
            last = max(last, end)
    return total, first, last


@dataclass
class Row:
    """One line of the results table: a ratio (or a bounded quantity) and its target."""

    benchmark: str
    metric: str
    value: float
    target: str
    passed: bool | None
    detail: dict[str, Any]


async def run_child(*args: str) -> dict[str, Any]:
    """``python -m bench._child ARGS`` in a fresh process; its JSON line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._child",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parent.parent),
    )
    async with asyncio.timeout(600):
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
