"""Helpers for the manager tests: fake installs, free ports, recorded bodies, inline servers.

Every fake install's ``main.py`` runs StoryCore's emulator when it is importable as a program
(``python -m storycore.emulator``), else the small ``fake_comfyui.py`` beside this file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from storycore.comfyui.manager import ManagerOptions
from storycore.comfyui.process import terminate_tree
from tests._recordings import load_reference_json

HERE = Path(__file__).resolve().parent
FAKE_SERVER = HERE / "fake_comfyui.py"

posix_only = pytest.mark.skipif(os.name == "nt", reason="fake installs use POSIX shell wrappers")


def emulator_available() -> bool:
    try:
        return importlib.util.find_spec("storycore.emulator.__main__") is not None
    except ImportError:
        return False


def stand_in_version() -> str:
    """The ``comfyui_version`` the stand-in ComfyUI reports: the emulator plays the current
    ComfyUI by default (``--profile current``); the small fake server answers the recording."""
    if emulator_available():
        from storycore.emulator._profiles import CURRENT_COMFYUI_VERSION

        return CURRENT_COMFYUI_VERSION
    return "0.3.64"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The prelude every fake main.py starts with: ``run_server()`` runs the emulator or the fallback.
PRELUDE = textwrap.dedent(
    f"""\
    import importlib.util, runpy, sys

    FAKE_SERVER = {str(FAKE_SERVER)!r}

    def run_server():
        try:
            spec = importlib.util.find_spec("storycore.emulator.__main__")
        except ImportError:
            spec = None
        if spec is not None:
            runpy.run_module("storycore.emulator", run_name="__main__", alter_sys=True)
        else:
            runpy.run_path({str(FAKE_SERVER)!r}, run_name="__main__")
    """
)

MAIN_SERVER = PRELUDE + "\nrun_server()\n"

MAIN_EXIT_AT_STARTUP = PRELUDE + textwrap.dedent(
    """
    print("Traceback (most recent call last):", flush=True)
    print("ModuleNotFoundError: No module named 'torch'", flush=True)
    sys.exit(7)
    """
)

MAIN_NEVER_READY = PRELUDE + textwrap.dedent(
    """
    import time
    print("loading forever", flush=True)
    for _ in range(600):
        time.sleep(0.1)
    """
)

MAIN_IGNORES_SIGTERM_WITH_GRANDCHILD = PRELUDE + textwrap.dedent(
    """
    import os, signal, subprocess
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "for _ in range(600): time.sleep(0.1)"])
    state = os.environ.get("FAKE_GRANDCHILD_FILE")
    if state:
        open(state, "w").write(str(child.pid))
    # Always the small fake server here, told not to handle signals: SIGTERM stays ignored.
    sys.argv.append("--no-signal-handlers")
    runpy.run_path(FAKE_SERVER, run_name="__main__")
    """
)

MAIN_WITH_GRANDCHILD = PRELUDE + textwrap.dedent(
    """
    import os, subprocess
    child = subprocess.Popen([sys.executable, "-c",
        "import time\\nfor _ in range(600): time.sleep(0.1)"])
    state = os.environ.get("FAKE_GRANDCHILD_FILE")
    if state:
        open(state, "w").write(str(child.pid))
    run_server()
    """
)


def _wrapper(path: Path) -> Path:
    """A shell script at ``path`` that runs this test's python (a venv's or portable python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def make_install(
    root: Path, layout: str, main_source: str = MAIN_SERVER
) -> tuple[Path, Path | None]:
    """Build a fake ComfyUI install; return ``(install_path, python_executable or None)``."""
    root.mkdir(parents=True, exist_ok=True)
    if layout == "portable":
        (root / "ComfyUI").mkdir(exist_ok=True)
        (root / "ComfyUI" / "main.py").write_text(main_source, encoding="utf-8")
        _wrapper(root / "python_embeded" / "python.exe")
        return root, None
    (root / "main.py").write_text(main_source, encoding="utf-8")
    if layout in ("venv", ".venv"):
        _wrapper(root / layout / "bin" / "python")
        return root, None
    if layout == "python":
        return root, Path(sys.executable)
    raise ValueError(layout)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def kill_tree_now(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        terminate_tree(psutil.Process(pid), graceful_timeout=0.5, force_kill_timeout=2.0)


def recorded_stats_app() -> web.Application:
    body = load_reference_json("system_stats.json")["body"]

    async def system_stats(_request: web.Request) -> web.Response:
        return web.json_response(body)

    async def prompt(_request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": 2}})

    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    app.router.add_get("/prompt", prompt)
    return app


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[int]:
    """Run ``app`` on loopback; yield its port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    try:
        yield int(sockets[0].getsockname()[1]) if sockets else port
    finally:
        await runner.cleanup()


def with_port(opts: ManagerOptions, port: int) -> ManagerOptions:
    return replace(opts, port=port)
