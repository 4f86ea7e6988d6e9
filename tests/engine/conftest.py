"""Fixtures for engine tests: projects of N shots, fast settings, emulators on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storycore.config import Settings, resolve_settings
from storycore.emulator import PROFILES, Emulator, EmulatorOptions
from storycore.engine import EngineEvent
from storycore.project import init_project

# "The engine's functional tests run against both profiles" (issue 16): every emulator these
# modules start without naming a profile plays each ComfyUI generation in turn.
PROFILED_MODULES = frozenset(
    {"test_engine_functional", "test_resume_functional", "test_previews_functional"}
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "emulator_profile" in metafunc.fixturenames and module in PROFILED_MODULES:
        metafunc.parametrize("emulator_profile", PROFILES, indirect=True)


@pytest.fixture(autouse=True)
def emulator_profile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The profile the test's emulators play: in PROFILED_MODULES, every Emulator whose
    options leave ``profile`` at the library default plays the parameter; elsewhere nothing
    changes."""
    default = EmulatorOptions().profile
    profile: str = getattr(request, "param", default)
    if profile == default:
        return profile
    build = Emulator.__init__

    def init(self: Emulator, options: EmulatorOptions | None = None, **kwargs: Any) -> None:
        options = options or EmulatorOptions()
        if options.profile == default:
            options = dataclasses.replace(options, profile=profile)
        build(self, options, **kwargs)

    monkeypatch.setattr(Emulator, "__init__", init)
    return profile


FAST = {
    "comfyui.health_check_interval": 0.2,
    "comfyui.health_check_timeout": 1.0,
    "comfyui.connect_timeout": 2.0,
    "comfyui.read_timeout": 5.0,
    "comfyui.graceful_shutdown": 5.0,
    "comfyui.startup_timeout": 10.0,
    "comfyui.idle_timeout": 20.0,
    "comfyui.failover_grace": 2.0,
    "render.steps": 3,
    "render.render_long_side": 128,
}


def fast_settings(**overrides: Any) -> Settings:
    cli = dict(FAST)
    cli.update(overrides)
    return resolve_settings(env={}, read_user_config=False, cli=cli).settings


def make_project(base: Path, shots: int, name: str = "Board") -> Path:
    """A project with ``shots`` shots (shot_01...)."""
    root = init_project(name, base)
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text())
    template = board["shots"][0]
    board["shots"] = []
    for n in range(1, shots + 1):
        shot = json.loads(json.dumps(template))
        shot.update(shot_id=f"shot_{n:02d}", shot_number=n, title=f"Panel {n}")
        shot["prompt_modules"]["subject"] = f"panel number {n}, a lighthouse"
        shot["prompt_modules"]["technical"]["steps"] = None  # the settings decide
        board["shots"].append(shot)
    board_path.write_text(json.dumps(board, indent=2))
    return root


class Recorder:
    """Collects engine events; optional hook called for each."""

    def __init__(self, hook: Callable[[EngineEvent], None] | None = None) -> None:
        self.events: list[EngineEvent] = []
        self.hook = hook

    def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)
        if self.hook is not None:
            self.hook(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def project12(tmp_path: Path) -> Path:
    return make_project(tmp_path, 12)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m storycore ARGS`` as a child process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def done_count(root: Path) -> int:
    """How many panels the journal says are finished (0 while it cannot be read yet)."""
    from storycore.journal import Journal

    try:
        return sum(1 for e in Journal(root).events() if e["event"] == "done")
    except (OSError, ValueError):
        return 0


async def render_then_kill(
    root: Path, url: str, env: dict[str, str], *, after: int, args: tuple[str, ...] = ()
) -> None:
    """``storycore generate-images`` in a child, killed with SIGKILL once ``after`` panels are
    done (within 60 s); asserts that it was the kill that ended it."""
    import contextlib
    import signal

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore",
        "generate-images",
        "--project",
        str(root),
        "--backend",
        url,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        async with asyncio.timeout(60):
            while done_count(root) < after:
                assert proc.returncode is None, "the CLI ended before it could be killed"
                await asyncio.sleep(0.01)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
