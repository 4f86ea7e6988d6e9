"""No stranger is killed: ``comfyui stop`` / ``restart`` signal only the server StoryCore started.

The pidfile is only a claim. A process with the recorded pid and its true create time may still
be another program (the record was copied, edited, or written by an older StoryCore that kept
no command line), and the port may be answered by something that is not ComfyUI. In each case
the command refuses (exit 5, saying how to stop the process by hand) and the stranger lives; the
real (fake) ComfyUI started by ``comfyui start`` is stopped as before, also when its python is a
wrapper that execs the real one (a pyenv shim).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from storycore.comfyui.process import PIDFILE_VERSION, load_pidfile
from tests.manager._support import FAKE_SERVER, free_port, kill_tree_now, make_install
from tests.security._support import ChildResult, run_storycore, serve

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process tests")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated long-running program (not ComfyUI)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def _state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"STORYCORE_STATE_DIR": str(_state(tmp_path)), "XDG_STATE_HOME": str(tmp_path / "x")}


def _pidfile(tmp_path: Path, port: int) -> Path:
    return _state(tmp_path) / "comfyui" / f"127.0.0.1_{port}" / "comfyui.pid"


def _claim(
    tmp_path: Path,
    port: int,
    pid: int,
    *,
    command: tuple[str, ...],
    cmdline: tuple[str, ...] = (),
) -> Path:
    """A pidfile naming ``pid`` with its real create time (so pid + create time match)."""
    path = _pidfile(tmp_path, port)
    record = {
        "version": PIDFILE_VERSION,
        "pid": pid,
        "create_time": psutil.Process(pid).create_time(),
        "host": "127.0.0.1",
        "port": port,
        "command": list(command),
        "log_path": str(path.parent / "comfyui.log"),
        "started_at": time.time(),
        "kind": "python",
    }
    if cmdline:
        record["cmdline"] = list(cmdline)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _comfyui_command(port: int) -> tuple[str, ...]:
    return (sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port))


async def _stop_and_restart(tmp_path: Path, port: int) -> list[ChildResult]:
    results = []
    for verb in ("stop", "restart"):
        result = await run_storycore(
            "comfyui", verb, "--port", str(port), env=_env(tmp_path), limit_s=60
        )
        result.assert_bounded(seconds=60)
        results.append(result)
    return results


def _assert_refused(result: ChildResult, pid: int, why: str) -> None:
    assert result.rc == 5, result.output
    assert f"did not stop pid {pid}" in result.stderr and why in result.stderr, result.stderr
    assert "nothing was signalled" in result.stderr and f"kill {pid}" in result.stderr
    assert "Traceback" not in result.output


async def _alive(proc: subprocess.Popen[bytes]) -> bool:
    await asyncio.sleep(0.2)
    return proc.poll() is None


async def test_a_stranger_with_the_recorded_pid_and_start_time_is_not_killed(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    port = free_port()
    command = _comfyui_command(port)
    pidfile = _claim(tmp_path, port, stranger.pid, command=command, cmdline=command)
    for result in await _stop_and_restart(tmp_path, port):
        _assert_refused(result, stranger.pid, "not the recorded server")
        assert await _alive(stranger)
    assert pidfile.exists()  # kept: it may still be the user's server; they decide


async def test_an_old_record_without_a_command_line_proves_nothing(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    port = free_port()
    _claim(tmp_path, port, stranger.pid, command=())
    for result in await _stop_and_restart(tmp_path, port):
        _assert_refused(result, stranger.pid, "holds no command line")
        assert await _alive(stranger)


async def test_a_port_that_answers_as_something_else_is_not_stopped(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello, I am not ComfyUI")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    real = tuple(psutil.Process(stranger.pid).cmdline())  # pid, create time, cmdline all match
    async with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        _claim(tmp_path, port, stranger.pid, command=real, cmdline=real)
        for result in await _stop_and_restart(tmp_path, port):
            _assert_refused(result, stranger.pid, "answers, but not as ComfyUI")
            assert await _alive(stranger)


MAIN_FAKE_SERVER = textwrap.dedent(
    f"""\
    import runpy
    runpy.run_path({str(FAKE_SERVER)!r}, run_name="__main__")
    """
)


async def test_the_server_storycore_started_is_still_stopped(tmp_path: Path) -> None:
    # A venv whose python is a shell wrapper that execs the real one, like a pyenv shim: the
    # command line changes once, right after the start.
    root, _ = make_install(tmp_path / "ComfyUI", "venv", MAIN_FAKE_SERVER)
    port = str(free_port())
    env = {**_env(tmp_path), "STORYCORE_COMFYUI__GPU": "false"}
    try:
        started = await run_storycore(
            "comfyui", "start", "--install-path", str(root), "--port", port, env=env
        )
        assert started.rc == 0, started.output
        first, _ = load_pidfile(_pidfile(tmp_path, int(port)))
        assert first is not None and first.cmdline[1:] == first.command[1:]
        assert first.cmdline[0] != first.command[0]  # the wrapper's exec was recorded
        restarted = await run_storycore(
            "comfyui", "restart", "--install-path", str(root), "--port", port, env=env
        )
        assert restarted.rc == 0, restarted.output
        assert "stopped ComfyUI" in restarted.stderr and "started ComfyUI" in restarted.stderr
        assert not psutil.pid_exists(first.pid) or _zombie(first.pid)
        second, _ = load_pidfile(_pidfile(tmp_path, int(port)))
        assert second is not None and second.pid != first.pid
        stopped = await run_storycore("comfyui", "stop", "--port", port, env=env)
        assert stopped.rc == 0, stopped.output
        assert f"stopped ComfyUI (pid {second.pid})" in stopped.stderr
        stopped.assert_bounded(seconds=60)
    finally:
        record, _ = load_pidfile(_pidfile(tmp_path, int(port)))
        if record is not None:
            kill_tree_now(record.pid)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
