"""The engine with a local ComfyUI install it starts and supervises, and the project lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storycore._lock import ProjectLock
from storycore.comfyui import ComfyUIManager, options_from_settings
from storycore.engine import ImageEngine, Notice, RenderRequest
from storycore.errors import ProjectError
from tests.engine.conftest import Recorder, fast_settings, make_project
from tests.manager._support import free_port, make_install, posix_only


async def test_a_second_run_on_the_same_project_is_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    with ProjectLock(root, "test"), pytest.raises(ProjectError, match="in use by another"):
        await ImageEngine(fast_settings()).render(RenderRequest(root, mock=True))
    summary = await ImageEngine(fast_settings()).render(RenderRequest(root, mock=True))
    assert summary.counts["placeholder"] == 1


def test_the_lock_names_the_holding_process_and_dies_with_it(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    code = (
        "import sys,time; from pathlib import Path; from storycore._lock import ProjectLock;"
        f"l=ProjectLock(Path({str(root)!r}), 'holder'); l.acquire(); print('held', flush=True);"
        "time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(ProjectError, match=rf"pid {child.pid} \(holder"):
            ProjectLock(root, "me").acquire()
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    with ProjectLock(root, "me"):
        pass


@posix_only
async def test_engine_starts_the_local_install_and_survives_its_crash(tmp_path: Path) -> None:
    install, python = make_install(tmp_path / "comfy", "python")
    port = free_port()
    settings = fast_settings(
        **{
            "comfyui.install_path": str(install),
            "comfyui.python_executable": str(python),
            "comfyui.port": port,
            "comfyui.gpu": False,
            "comfyui.startup_timeout": 30.0,
            "comfyui.graceful_shutdown": 2.0,
            "comfyui.force_kill": 2.0,
            # every (re)started server crashes on its 4th prompt: restarts must keep up
            "comfyui.extra_args": ["--crash-after-prompts", "4"],
            "comfyui.max_retries": 8,
            "state_dir": str(tmp_path / "state"),
        }
    )
    root = make_project(tmp_path, 6)
    recorder = Recorder()
    try:
        summary = await ImageEngine(settings, on_event=recorder).render(RenderRequest(root))
    finally:
        await ComfyUIManager(options_from_settings(settings)).stop()
    texts = [e.text for e in recorder.of(Notice)]
    assert any(t.startswith("starting ComfyUI") for t in texts), texts
    assert any("was restarted" in t for t in texts), texts
    assert summary.counts["rendered"] == 6, summary.to_dict()
    assert not summary.mock
