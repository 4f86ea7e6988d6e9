"""Supervision: a crash during a render is noticed, the server restarted, the engine told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import psutil
import pytest

from storycore.comfyui.manager import ComfyUIManager, ManagerOptions
from storycore.comfyui.supervisor import RestartEvent, Supervisor
from storycore.errors import ManagerError, StartupFailed

from ._support import make_install, posix_only, stand_in_version

Factory = Callable[..., ComfyUIManager]

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def _crashing(options: ManagerOptions, tmp_path: Path, **changes: object) -> ManagerOptions:
    root, python = make_install(tmp_path / "install", "python")
    return replace(
        options,
        install_path=root,
        python_executable=python,
        extra_args=("--crash-after-prompts", "1"),
        **changes,  # type: ignore[arg-type]
    )


async def _submit(url: str) -> None:
    """What the engine does: POST /prompt (the server dies right after answering)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/prompt", json={"prompt": GRAPH, "client_id": "test"}) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
        assert "prompt_id" in body


@posix_only
async def test_crash_during_render_restarts_and_tells_the_engine(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_crashing(options, tmp_path))
    first = await manager.start()
    assert first.pid is not None
    events: list[RestartEvent] = []
    restarted = asyncio.Event()

    async def on_restart(event: RestartEvent) -> None:
        events.append(event)
        restarted.set()

    supervisor = Supervisor(
        manager, on_restart=on_restart, interval=0.1, base_delay=0.05, max_delay=0.2
    )
    async with supervisor:
        assert supervisor.running
        await _submit(manager.url)
        await asyncio.wait_for(restarted.wait(), timeout=20)
        assert manager.is_alive()
    assert not supervisor.running
    assert len(events) == 1 and supervisor.restarts == 1
    event = events[0]
    assert event.attempt == 1 and "exited" in event.reason
    assert event.pid is not None and event.pid != first.pid
    assert event.result.action == "started" and event.url == manager.url
    assert not psutil.pid_exists(first.pid) or (
        psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
    )
    status = await manager.status()
    assert status.pid == event.pid and status.comfyui_version == stand_in_version()
    assert supervisor.error is None
    await manager.stop()


@posix_only
async def test_gives_up_after_the_restarts_are_used(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    manager = managed(_crashing(options, tmp_path, max_restarts=1))
    await manager.start()
    events: list[RestartEvent] = []
    gave_up: list[ManagerError] = []
    done = asyncio.Event()

    async def on_restart(event: RestartEvent) -> None:
        events.append(event)
        await _submit(event.url)  # the resubmitted prompt crashes it again

    async def on_give_up(error: ManagerError) -> None:
        gave_up.append(error)
        done.set()

    async with Supervisor(
        manager, on_restart=on_restart, on_give_up=on_give_up, interval=0.1, base_delay=0.05
    ) as supervisor:
        await _submit(manager.url)
        await asyncio.wait_for(done.wait(), timeout=20)
    assert len(events) == 1
    assert supervisor.gave_up and isinstance(supervisor.error, StartupFailed)
    assert gave_up == [supervisor.error]
    assert "1 automatic restarts" in str(supervisor.error)


@posix_only
async def test_hung_server_is_restarted_after_failed_probes(
    tmp_path: Path, options: ManagerOptions, managed: Factory
) -> None:
    root, python = make_install(tmp_path / "install", "python")
    manager = managed(replace(options, install_path=root, python_executable=python))
    first = await manager.start()
    assert first.pid is not None
    restarted = asyncio.Event()
    events: list[RestartEvent] = []

    async def on_restart(event: RestartEvent) -> None:
        events.append(event)
        restarted.set()

    async with Supervisor(
        manager,
        on_restart=on_restart,
        interval=0.1,
        failures_before_restart=2,
        probe_timeout=0.3,
        base_delay=0.05,
    ):
        psutil.Process(first.pid).suspend()  # alive, but answers nothing
        await asyncio.wait_for(restarted.wait(), timeout=20)
    assert "health probes failed" in events[0].reason
    assert events[0].pid != first.pid
    assert manager.is_alive()
    await manager.stop()


async def test_supervision_needs_a_managed_server(options: ManagerOptions) -> None:
    async def on_restart(_event: RestartEvent) -> None:
        raise AssertionError("not called")

    supervisor = Supervisor(ComfyUIManager(options), on_restart=on_restart)
    with pytest.raises(ManagerError, match="needs a ComfyUI started by StoryCore"):
        await supervisor.start()
    assert not supervisor.running
