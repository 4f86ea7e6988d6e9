"""Benchmark 1: throughput and server busy fraction, StoryCore vs a sequential client.

Every server is an emulator process with a fixed emulated GPU time (``STEP_SECONDS`` per sampler
step, ``STEPS`` steps). The busy time is measured on the server side, from the history entries'
``status.messages`` timestamps (``execution_start`` -> ``execution_success``, wall clock in ms),
and divided by the client's wall time, measured two ways:

* *to last panel*: from the call to ``ImageEngine.render`` until the last ``PanelDone`` (image,
  sidecar and ``project.json`` written): project load, connection and preflight included;
* *whole command*: until ``render`` returns (adds the storyboard sheet refresh and teardown).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench._baseline import panel_graphs, sequential_render
from bench._common import (
    STEPS,
    Row,
    bench_settings,
    busy_seconds,
    emulators,
    history,
    make_project,
    run_child,
)

STEP_SECONDS = 0.05


async def _baseline(work: Path, panels: int) -> dict[str, float]:
    root = make_project(work / "baseline", panels)
    graphs = await asyncio.to_thread(panel_graphs, root, bench_settings())
    out = work / "baseline-images"
    out.mkdir()
    async with emulators(1, work / "emu-baseline", step_seconds=STEP_SECONDS) as (emu,):
        started = time.time()
        saved = await sequential_render(emu.url, graphs, out)
        wall = time.time() - started
        busy, _first, _last = busy_seconds(await history(emu.url))
    if saved != panels:
        raise RuntimeError(f"the baseline saved {saved} images for {panels} panels")
    return {"wall": wall, "busy": busy}


async def _engine(work: Path, name: str, panels: int, servers: int) -> dict[str, Any]:
    root = make_project(work / name, panels)
    async with emulators(servers, work / f"emu-{name}", step_seconds=STEP_SECONDS) as emus:
        result = await run_child(",".join(e.url for e in emus), str(root))
        busy = 0.0
        first, last = float("inf"), 0.0
        for emu in emus:
            total, start, end = busy_seconds(await history(emu.url))
            busy += total
            first, last = min(first, start), max(last, end)
    if result.get("rendered", 0) + result.get("placeholder", 0) != panels:
        raise RuntimeError(f"StoryCore rendered {result} of {panels} panels")
    t0 = result["t_start"]
    return {
        "wall": result["wall"],
        "to_last": result["t_last_done"] - t0,
        "busy": busy,
        "lead_s": first - t0,
        "tail_after_last_execution_s": result["t_last_done"] - last,
        "teardown_s": result["t_end"] - result["t_last_done"],
    }


def _r(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


async def run(work: Path, *, quick: bool) -> list[Row]:
    panels = 12 if quick else 40
    base = await _baseline(work, panels)
    one = await _engine(work, "one", panels, 1)
    four = await _engine(work, "four", panels * 4, 4)
    setup = {"panels": panels, "step_seconds": STEP_SECONDS, "steps": STEPS}
    speedup = base["wall"] / one["to_last"]
    busy_last = one["busy"] / one["to_last"]
    busy_wall = one["busy"] / one["wall"]
    scale_last = (4 * panels / four["to_last"]) / (panels / one["to_last"])
    scale_wall = (4 * panels / four["wall"]) / (panels / one["wall"])
    detail = {**setup, "sequential": _r(base), "storycore_1": _r(one), "storycore_4": _r(four)}
    return [
        Row(
            "throughput",
            "speed-up vs sequential client, 1 server",
            speedup,
            "> 1.0",
            speedup > 1.0,
            detail,
        ),
        Row(
            "throughput",
            "busy fraction, 1 server (to last panel)",
            busy_last,
            ">= 0.95",
            busy_last >= 0.95,
            {},
        ),
        Row(
            "throughput",
            "busy fraction, 1 server (whole command)",
            busy_wall,
            ">= 0.95",
            busy_wall >= 0.95,
            {},
        ),
        Row(
            "throughput",
            "busy fraction, sequential client",
            base["busy"] / base["wall"],
            "reference",
            None,
            {},
        ),
        Row(
            "throughput",
            "4 servers / 1 server (to last panel)",
            scale_last,
            ">= 3.8",
            scale_last >= 3.8,
            {"panels_4": 4 * panels},
        ),
        Row(
            "throughput",
            "4 servers / 1 server (whole command)",
            scale_wall,
            ">= 3.8",
            scale_wall >= 3.8,
            {"panels_4": 4 * panels},
        ),
    ]
