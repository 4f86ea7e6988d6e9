"""Fixtures for the manager tests: fast options and cleanup of every child process started."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storycore.comfyui.manager import ComfyUIManager, ManagerOptions
from storycore.comfyui.process import check_identity, load_pidfile

from ._support import free_port, kill_tree_now


@pytest.fixture
def options(tmp_path: Path) -> ManagerOptions:
    """Fast options for a server on a free loopback port with a private state folder."""
    return ManagerOptions(
        host="127.0.0.1",
        port=free_port(),
        state_dir=tmp_path / "state",
        startup_timeout=20.0,
        graceful_timeout=1.5,
        force_kill_timeout=2.0,
        health_interval=0.2,
        gpu=False,
        detect_desktop=False,
    )


@pytest.fixture
def managed() -> Iterator[Callable[..., ComfyUIManager]]:
    """Make managers whose servers (and their trees) are always killed at the end."""
    made: list[ComfyUIManager] = []

    def factory(opts: ManagerOptions, **kwargs: Any) -> ComfyUIManager:
        manager = ComfyUIManager(opts, **kwargs)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        record, _ = load_pidfile(manager.pidfile_path)
        if record is not None and check_identity(record.pid, record.create_time).matches:
            kill_tree_now(record.pid)
        popen = manager._popen
        if popen is not None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait(timeout=5)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that sleeps for a minute (killed at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=5)
