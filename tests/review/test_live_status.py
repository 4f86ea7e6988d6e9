"""``.storycore/live.json`` (engine/_live.py): written while a render runs, coalesced, atomic,
small, never outside the project; read back by the feed's checked reader (review/_watch.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import (
    ImageEngine,
    PanelDone,
    PanelFailed,
    PanelPreview,
    PanelProgress,
    PanelSkipped,
    PanelSubmitted,
    RenderRequest,
    RunStarted,
)
from storycore.engine._live import LIVE_FILE, LiveLimits, LiveStatus
from storycore.review._watch import read_live
from tests.engine.conftest import Recorder, fast_settings, make_project
from tests.review._support_live import LiveWatcher, read_live_file, wait_until

URL = "http://127.0.0.1:9"


def _started(total: int, to_render: int) -> RunStarted:
    return RunStarted(total=total, to_render=to_render, backends=(URL,), mock=False, project="p")


async def test_panel_keys_progress_previews_and_the_end(tmp_path: Path) -> None:
    recorder = Recorder()
    async with LiveStatus(tmp_path, recorder, profile="draft") as live:
        live.observe(_started(3, 2))
        live.observe(PanelSkipped("S00", "cached"))
        live.observe(PanelSubmitted("S01#2", URL, "p1"))
        live.observe(PanelSubmitted("S02", URL, "p2"))
        live.observe(PanelProgress("S01#2", 0.4, step=8, steps=20))
        live.observe(PanelPreview("S01#2", ".storycore/previews/S01_2-abc.jpg", 8, 20, 64, 48, 3))
        await wait_until(lambda: "S01#2" in _panels(tmp_path) and _fraction(tmp_path) == 0.4)
        state = read_live_file(tmp_path)
        assert state["version"] == 1 and state["pid"] == os.getpid() and state["running"]
        assert state["run_id"] == live.run_id and state["profile"] == "draft"
        assert (state["total"], state["to_render"], state["skipped"]) == (3, 2, 1)
        assert state["panels"]["S01#2"] == {
            "shot_id": "S01",
            "take": 2,
            "state": "running",
            "fraction": 0.4,
            "step": 8,
            "steps": 20,
            "backend": URL,
            "preview": ".storycore/previews/S01_2-abc.jpg",
            "preview_count": 3,
        }
        assert state["panels"]["S02"]["state"] == "submitted"
        assert (state["panels"]["S02"]["shot_id"], state["panels"]["S02"]["take"]) == ("S02", 1)
        live.observe(PanelDone("S01#2", "x.png", 1.0, False, URL, "p1"))
        live.observe(PanelFailed("S02", "boom", will_retry=True))  # not counted: it runs again
        live.observe(PanelSubmitted("S02", URL, "p3", attempt=2))
        live.observe(PanelFailed("S02", "boom"))
    state = read_live_file(tmp_path)
    assert state["running"] is False and state["panels"] == {}
    assert (state["done"], state["failed"]) == (1, 1)
    # Every event went on to the sink, in order.
    assert [type(e).__name__ for e in recorder.events][:3] == [
        "RunStarted",
        "PanelSkipped",
        "PanelSubmitted",
    ]
    assert len(recorder.events) == 10


def _panels(root: Path) -> dict[str, object]:
    try:
        panels: dict[str, object] = read_live_file(root)["panels"]
        return panels
    except (FileNotFoundError, ValueError):
        return {}


def _fraction(root: Path) -> float | None:
    panel = _panels(root).get("S01#2")
    return panel.get("fraction") if isinstance(panel, dict) else None


async def test_writes_are_coalesced_and_the_last_state_is_written(tmp_path: Path) -> None:
    watcher = LiveWatcher(tmp_path)
    watching = asyncio.create_task(watcher.run())
    try:
        started = time.monotonic()
        async with LiveStatus(tmp_path, None) as live:
            live.observe(PanelSubmitted("shot_01", URL, "p1"))
            for n in range(1, 301):
                live.observe(PanelProgress("shot_01", n / 300, step=n, steps=300))
                await asyncio.sleep(0.002)
            await wait_until(lambda: _panel_step(tmp_path) == 300, within=5)
            elapsed = time.monotonic() - started
            writes = live.writes
        # 300 changes in `elapsed` seconds: at most one write per 0.25 s (and the first).
        assert 2 <= writes <= elapsed / 0.25 + 2, (writes, elapsed)
        await wait_until(
            lambda: bool(watcher.states) and watcher.states[-1]["running"] is False, within=5
        )
    finally:
        watching.cancel()
    assert watcher.broken == []  # atomic: never half a file
    assert read_live_file(tmp_path)["running"] is False


def _panel_step(root: Path) -> int | None:
    panel = _panels(root).get("shot_01")
    return panel.get("step") if isinstance(panel, dict) else None


async def test_ten_thousand_panels_write_a_small_file(tmp_path: Path) -> None:
    limits = LiveLimits(interval=0.05, max_panels=1000)
    async with LiveStatus(tmp_path, None, limits=limits) as live:
        live.observe(_started(10_000, 10_000))
        for n in range(10_000):
            live.observe(PanelSubmitted(f"shot_{n:05d}", URL, f"p{n}"))
        await wait_until(lambda: len(_panels(tmp_path)) == 1000)
        assert (tmp_path / LIVE_FILE).stat().st_size < 400_000
        for n in range(9_990):
            live.observe(PanelDone(f"shot_{n:05d}", "x.png", 0.1, False, URL, f"p{n}"))
        await wait_until(lambda: read_live_file(tmp_path)["done"] == 9_990)
        # Only the running ones are listed.
        assert set(_panels(tmp_path)) <= {f"shot_{n:05d}" for n in range(9_990, 10_000)}
    state = read_live_file(tmp_path)
    assert state["done"] == 9_990 and state["panels"] == {}
    assert (tmp_path / LIVE_FILE).stat().st_size < 2_000


async def test_a_link_at_live_json_is_replaced_never_written_through(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / ".storycore").mkdir(parents=True)
    outside = tmp_path / "bashrc"
    outside.write_text("keep me\n")
    (root / LIVE_FILE).symlink_to(outside)
    async with LiveStatus(root, None) as live:
        live.observe(_started(1, 1))
    assert outside.read_text() == "keep me\n"
    assert not (root / LIVE_FILE).is_symlink()
    assert read_live_file(root)["total"] == 1


async def test_a_state_folder_leading_out_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / ".storycore").symlink_to(elsewhere)
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="storycore.engine"):
        async with LiveStatus(root, recorder) as live:
            live.observe(_started(2, 2))
            await asyncio.sleep(0.4)
            live.observe(PanelSubmitted("shot_01", URL, "p1"))
    assert list(elsewhere.iterdir()) == []  # nothing written outside the project
    assert len(recorder.events) == 2  # the render's events still flow
    assert sum("live status" in r.getMessage() for r in caplog.records) == 1


async def test_the_reader_checks_what_the_file_says(tmp_path: Path) -> None:
    state = tmp_path / ".storycore"
    state.mkdir()
    planted = {
        "running": True,
        "pid": os.getpid(),
        "panels": {
            "S01": {"preview": "../../etc/passwd", "fraction": "x", "take": -3},
            "S02": {"preview": ".storycore/previews/S02.jpg", "fraction": 7, "step": 2},
            "S03": "not a panel",
        },
        "done": "many",
    }
    (state / "live.json").write_text(json.dumps(planted))
    live = await asyncio.to_thread(read_live, tmp_path)
    assert live is not None and live["running"] is True and live["done"] == 0
    assert live["panels"]["S01"]["preview"] is None
    assert live["panels"]["S01"]["take"] == 1 and live["panels"]["S01"]["fraction"] == 0.0
    assert live["panels"]["S02"]["preview"] == ".storycore/previews/S02.jpg"
    assert live["panels"]["S02"]["fraction"] == 1.0
    assert "S03" not in live["panels"]
    # A run whose process is gone (killed) reads as not running.
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    (state / "live.json").write_text(json.dumps({**planted, "pid": proc.pid}))
    live = await asyncio.to_thread(read_live, tmp_path)
    assert live is not None and live["running"] is False and live["panels"] == {}
    # A link is not read at all.
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(planted))
    (state / "live.json").unlink()
    (state / "live.json").symlink_to(outside)
    assert await asyncio.to_thread(read_live, tmp_path) is None


async def test_a_real_render_writes_progress_then_the_end(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    watcher = LiveWatcher(root)
    live = LiveStatus(root, None)
    options = EmulatorOptions(step_seconds=0.08, preview_method="auto")
    async with Emulator(options) as emu:
        watching = asyncio.create_task(watcher.run())
        try:
            engine = ImageEngine(fast_settings(**{"render.steps": 6}), on_event=live.observe)
            async with live:
                summary = await asyncio.wait_for(
                    engine.render(RenderRequest(root, backends=(emu.url,))), 60
                )
        finally:
            watching.cancel()
    assert summary.counts["rendered"] == 2, summary.to_dict()
    assert watcher.broken == []
    running = [s for s in watcher.states if s["running"]]
    assert running, "live.json was never seen while the render ran"
    seen = [p for s in running for p in s["panels"].values()]
    assert any(p["state"] == "running" and 0 < p["fraction"] <= 1 for p in seen)
    assert any(p["steps"] == 6 and p["step"] for p in seen)
    previews = [p["preview"] for p in seen if p["preview"]]
    assert previews and all(p.startswith(".storycore/previews/") for p in previews)
    assert {p["backend"] for p in seen} == {emu.url}
    final = read_live_file(root)
    assert final["running"] is False and final["panels"] == {}
    assert (final["total"], final["to_render"], final["done"], final["failed"]) == (2, 2, 2, 0)
