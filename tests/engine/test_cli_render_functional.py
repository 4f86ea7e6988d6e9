"""`storycore generate-images` as a user runs it: JSON events, Ctrl-C, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from storycore.emulator import Emulator, EmulatorOptions
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import make_project

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__GRACEFUL_SHUTDOWN": "10",
}


async def _cli(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.update(FAST_ENV)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def test_json_events_and_summary(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with Emulator() as emu:
        proc = await _cli("generate-images", "-p", str(root), "--backend", emu.url, "--json")
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "summary" and events[-1]["counts"]["rendered"] == 3
    assert kinds.count("panel_done") == 3 and "run_started" in kinds
    assert all(e["placeholder"] is False for e in events if e["event"] == "panel_done")


async def test_ctrl_c_stops_cleanly_and_the_next_run_finishes(tmp_path: Path) -> None:
    root = make_project(tmp_path, 10)
    async with Emulator(EmulatorOptions(step_seconds=0.1)) as emu:
        proc = await _cli("generate-images", "-p", str(root), "--backend", emu.url, "--json")
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = await proc.stdout.readline()
                assert line, "the CLI ended early"
                if json.loads(line)["event"] == "panel_done":
                    break
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, err = await proc.communicate()
        assert proc.returncode == 130, err.decode()
        summary = json.loads(rest.decode().splitlines()[-1])
        assert summary["stopped"] is True and summary["counts"]["stopped"] > 0
        assert Journal(root).open_prompts() == []  # running panels finished, nothing open
        done_first = len(records(load_project(root)))

        proc = await _cli("generate-images", "-p", str(root), "--backend", emu.url, "--json")
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        final = json.loads(out.decode().splitlines()[-1])
        assert final["counts"]["skipped"] == done_first
        assert final["counts"]["rendered"] == 10 - done_first
        assert len(emu.executed_prompt_ids) == len(set(emu.executed_prompt_ids)) == 10


async def test_fallback_fail_and_bad_flags_give_clear_errors(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    proc = await _cli(
        "generate-images", "-p", str(root), "--backend", "http://127.0.0.1:9", "--fallback", "fail"
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 4
    text = err.decode()
    assert "no ComfyUI server is reachable" in text and "http://127.0.0.1:9" in text
    assert "Traceback" not in text

    proc = await _cli("generate-images", "-p", str(root), "--fallback", "maybe")
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2 and "--fallback" in err.decode()

    proc = await _cli("generate-images", "-p", str(tmp_path / "nowhere"))
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 3 and "is not a folder" in err.decode()
