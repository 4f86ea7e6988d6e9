"""ComfyUIManager with real child processes: start, status, stop, restart, adopt, refuse, logs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from storycore.comfyui.manager import ComfyUIManager, ManagerOptions, ServerState
from storycore.comfyui.process import PidRecord, load_pidfile, spawn_detached, write_pidfile
from storycore.errors import PortInUse, StartupFailed, StopFailed

from ._support import (
    MAIN_EXIT_AT_STARTUP,
    MAIN_IGNORES_SIGTERM_WITH_GRANDCHILD,
    MAIN_NEVER_READY,
    MAIN_WITH_GRANDCHILD,
    dead_pid,
    make_install,
    posix_only,
    recorded_stats_app,
    serve,
    stand_in_version,
)

Factory = Callable[..., ComfyUIManager]


def _opts(
    options: ManagerOptions, tmp_path: Path, layout: str, source: str | None = None
) -> ManagerOptions:
    kwargs = {} if source is None else {"main_source": source}
    root, python = make_install(tmp_path / "install", layout, **kwargs)
    return replace(options, install_path=root, python_executable=python)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@posix_only
@pytest.mark.parametrize("layout", ["python", "venv", ".venv", "portable"])
async def test_start_status_stop_each_layout(
    tmp_path: Path, options: ManagerOptions, managed: Factory, layout: str
) -> None:
    manager = managed(_opts(options, tmp_path, layout))
    stopped = await manager.status()
    assert stopped.state is ServerState.STOPPED and stopped.pid is None

    result = await manager.start()
    assert result.action == "started" and result.managed
    assert result.pid is not None and result.comfyui_version == stand_in_version()
    assert result.log_path == manager.log_path and manager.log_path.is_file()
    assert "--cpu" in result.command and "--disable-auto-launch" in result.command
    assert result.command[result.command.index("--port") + 1] == str(options.port)

    record, problem = load_pidfile(manager.pidfile_path)
    assert problem is None and record is not None
    assert record.pid == result.pid and record.port == options.port
    assert record.create_time == pytest.approx(psutil.Process(record.pid).create_time())
    assert record.command == result.command and record.kind in ("python", "venv", "portable")

    status = await manager.status()
    assert status.state is ServerState.RUNNING and status.managed
    assert status.pid == result.pid and status.uptime_s is not None and status.uptime_s >= 0
    assert status.comfyui_version == stand_in_version() and status.devices
    assert status.queue_remaining == 0 and status.log_path == manager.log_path
    assert status.url == f"http://127.0.0.1:{options.port}"

    again = await manager.start()
    assert again.action == "already-running" and again.pid == result.pid

    stop = await manager.stop()
    assert stop.action == "stopped" and stop.pid == result.pid
    assert stop.report is not None and stop.report.graceful
    assert not manager.pidfile_path.exists()
    assert _gone(result.pid)
    assert (await manager.status()).state is ServerState.STOPPED
    assert (await manager.stop()).action == "not-running"


@posix_only
async def test_exit_during_startup_fails_at_once_with_the_log(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "python", MAIN_EXIT_AT_STARTUP))
    began = time.monotonic()
    with pytest.raises(StartupFailed) as info:
        await manager.start()
    assert time.monotonic() - began < 10  # not the 20 s start-up timeout
    message = str(info.value)
    assert "exited with code 7" in message
    assert "No module named 'torch'" in message
    assert info.value.where == str(manager.log_path)
    assert not manager.pidfile_path.exists()


@posix_only
async def test_never_ready_is_stopped_after_the_timeout(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    opts = replace(_opts(options, tmp_path, "python", MAIN_NEVER_READY), startup_timeout=1.5)
    manager = managed(opts)
    with pytest.raises(StartupFailed, match=r"within 1\.5 s") as info:
        await manager.start()
    assert "loading forever" in str(info.value)
    assert not manager.pidfile_path.exists()
    assert not manager.is_alive()


@posix_only
async def test_cancelled_start_leaves_nothing_behind(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "python", MAIN_NEVER_READY))
    task = asyncio.create_task(manager.start())
    for _ in range(100):
        if manager.pidfile_path.exists():
            break
        await asyncio.sleep(0.05)
    record, _ = load_pidfile(manager.pidfile_path)
    assert record is not None
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _gone(record.pid)
    assert not manager.pidfile_path.exists()


@posix_only
async def test_stop_kills_stubborn_server_and_grandchild(
    tmp_path: Path, options: ManagerOptions, managed: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_GRANDCHILD_FILE", str(marker))
    opts = replace(
        _opts(options, tmp_path, "python", MAIN_IGNORES_SIGTERM_WITH_GRANDCHILD),
        graceful_timeout=1.0,
    )
    manager = managed(opts)
    result = await manager.start()
    grandchild = int(marker.read_text())
    assert psutil.Process(grandchild).ppid() == result.pid
    stop = await manager.stop()
    assert stop.action == "stopped" and "by force" in stop.message
    assert stop.report is not None and set(stop.report.killed) >= {result.pid, grandchild}
    assert stop.report.elapsed >= 1.0
    assert _gone(result.pid) and _gone(grandchild)


@posix_only
async def test_grandchild_stopped_gracefully(
    tmp_path: Path, options: ManagerOptions, managed: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_GRANDCHILD_FILE", str(marker))
    manager = managed(_opts(options, tmp_path, "python", MAIN_WITH_GRANDCHILD))
    await manager.start()
    grandchild = int(marker.read_text())
    stop = await manager.stop()
    assert stop.report is not None and grandchild in stop.report.terminated
    assert _gone(grandchild)


async def test_port_served_by_comfyui_is_adopted(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    async with serve(recorded_stats_app()) as port:
        manager = managed(replace(options, port=port, install_path=tmp_path / "none"))
        result = await manager.start()
        assert result.action == "adopted" and not result.managed
        assert "already serving" in result.message and "0.3.64" in result.message
        assert not manager.pidfile_path.exists()
        status = await manager.status()
        assert status.state is ServerState.RUNNING and not status.managed
        assert status.queue_remaining == 2
        stop = await manager.stop()
        assert stop.action == "not-managed"


async def test_port_held_by_something_else_is_refused(
    options: ManagerOptions, managed: Factory
) -> None:
    async def hello(_r: web.Request) -> web.Response:
        return web.Response(text="hello, I am not ComfyUI")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    async with serve(app) as port:
        manager = managed(replace(options, port=port))
        with pytest.raises(PortInUse) as info:
            await manager.start()
    message = str(info.value)
    assert f"port {port}" in message and "not a ComfyUI" in message
    if sys.platform.startswith("linux"):
        assert f"pid {os.getpid()}" in message
    assert not manager.pidfile_path.exists()


@posix_only
async def test_stale_pidfile_is_cleaned(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "python"))
    stale = PidRecord(dead_pid(), 12345.0, "127.0.0.1", options.port, ("x",), "/nowhere", 0.0)
    write_pidfile(manager.pidfile_path, stale)
    stop = await manager.stop()
    assert stop.action == "stale-cleaned" and "nothing was signalled" in stop.message
    assert not manager.pidfile_path.exists()

    write_pidfile(manager.pidfile_path, stale)
    status = await manager.status()
    assert status.state is ServerState.STOPPED and any("stale" in n for n in status.notes)
    result = await manager.start()
    assert result.action == "started"
    assert any("stale pidfile" in note for note in result.notes)

    manager.pidfile_path.write_text("{garbage", encoding="utf-8")
    cleaned = await manager.stop()
    assert cleaned.action == "stale-cleaned" and "unreadable" in cleaned.message
    assert result.pid is not None and not _gone(result.pid)  # it was not signalled


async def test_reused_pid_is_never_signalled(
    options: ManagerOptions, managed: Factory, sleeper: subprocess.Popen[bytes]
) -> None:
    stranger = sleeper
    manager = managed(options)
    true_create = psutil.Process(stranger.pid).create_time()
    record = PidRecord(
        stranger.pid, true_create - 100.0, "127.0.0.1", options.port, ("x",), "/l", 0.0
    )
    write_pidfile(manager.pidfile_path, record)
    assert not manager.is_alive()
    stop = await manager.stop()
    assert stop.action == "stale-cleaned"
    assert "another program" in stop.message
    await asyncio.sleep(0.2)
    assert stranger.poll() is None  # still running: it was never signalled


@posix_only
async def test_restart_gives_a_new_process(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "venv"))
    first = await manager.start()
    stopped, second = await manager.restart()
    assert stopped.action == "stopped" and stopped.pid == first.pid
    assert second.action == "started" and second.pid != first.pid
    assert _gone(first.pid or 0)
    assert manager.is_alive()
    await manager.stop()


@posix_only
async def test_logs_tail_and_follow(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "python"))
    await manager.start()
    lines = manager.tail_log(200)
    assert any("===== storycore: starting" in line for line in lines)
    assert any(str(options.port) in line for line in lines)

    async def collect() -> list[str]:
        return [line async for line in manager.follow_log(poll=0.05, max_seconds=1.0)]

    began = time.monotonic()
    task = asyncio.create_task(collect())
    await asyncio.sleep(0.2)
    with manager.log_path.open("a", encoding="utf-8") as log:
        log.write("hello from the test\nsecond")
    await asyncio.sleep(0.2)
    with manager.log_path.open("a", encoding="utf-8") as log:
        log.write(" half\n")
    followed = await task
    assert 0.9 < time.monotonic() - began < 5
    assert "hello from the test" in followed and "second half" in followed
    await manager.stop()
    # Once the server is gone, following ends by itself.
    began = time.monotonic()
    assert [line async for line in manager.follow_log(poll=0.05)] == []
    assert time.monotonic() - began < 2


@pytest.mark.parametrize(
    ("startup_timeout", "state"), [(60.0, ServerState.STARTING), (0.0, ServerState.UNHEALTHY)]
)
async def test_status_of_a_process_that_does_not_answer(
    tmp_path: Path,
    options: ManagerOptions,
    managed: Factory,
    startup_timeout: float,
    state: ServerState,
) -> None:
    manager = managed(replace(options, startup_timeout=startup_timeout))
    spawned = spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        cwd=tmp_path,
        env=dict(os.environ),
        log_path=manager.log_path,
    )
    try:
        write_pidfile(
            manager.pidfile_path,
            PidRecord(
                spawned.pid,
                spawned.create_time,
                options.host,
                options.port,
                spawned.cmdline,  # what stop compares (issue 15: pid, create time, cmdline)
                str(manager.log_path),
                time.time(),
            ),
        )
        status = await manager.status(timeout=0.5)
        assert status.state is state and status.pid == spawned.pid and status.managed
        stop = await manager.stop()
        assert stop.action == "stopped" and any("did not answer" in n for n in stop.notes)
    finally:
        spawned.popen.kill()
        spawned.popen.wait(timeout=5)


@posix_only
async def test_survivors_are_reported_and_the_pidfile_kept(
    tmp_path: Path, options: ManagerOptions, managed: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that survives SIGKILL (a process stuck in the kernel) cannot be made on
    purpose, so here the kill call itself is the one seam that is replaced."""
    opts = replace(
        _opts(options, tmp_path, "python", MAIN_IGNORES_SIGTERM_WITH_GRANDCHILD),
        graceful_timeout=0.3,
        force_kill_timeout=0.3,
    )
    monkeypatch.setenv("FAKE_GRANDCHILD_FILE", str(tmp_path / "gc.pid"))
    manager = managed(opts)
    result = await manager.start()
    with monkeypatch.context() as patch:
        patch.setattr(psutil.Process, "kill", lambda self: None)
        patch.setattr("storycore.comfyui.process._kill_group", lambda pgid: None)
        with pytest.raises(StopFailed) as info:
            await manager.stop()
    assert result.pid in info.value.survivors
    assert "survived termination and kill" in str(info.value)
    assert manager.pidfile_path.exists()  # so that a later stop can try again
    assert manager.is_alive()
    final = await manager.stop()
    assert final.action == "stopped" and not manager.pidfile_path.exists()


@posix_only
async def test_follow_survives_log_rotation(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_opts(options, tmp_path, "python"))
    await manager.start()

    async def collect() -> list[str]:
        return [line async for line in manager.follow_log(poll=0.05, max_seconds=1.0)]

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.2)
    with manager.log_path.open("a", encoding="utf-8") as log:
        log.write("before rotation\n")
    await asyncio.sleep(0.2)
    manager.log_path.rename(manager.log_path.with_name("comfyui.log.1"))
    manager.log_path.write_text("after rotation\n", encoding="utf-8")
    followed = await task
    assert "before rotation" in followed and "after rotation" in followed
    await manager.stop()
