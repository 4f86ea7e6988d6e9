"""Benchmarks 2 and 3: client CPU per panel, preflight + graph building, peak RSS vs board size.

The renders run against an emulator process with ``step_seconds=0`` and 128 px images (a few
KiB each, so image transfer is negligible), each in a fresh child process
(:mod:`bench._child`) that reports its own process CPU time and ``ru_maxrss``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench._common import Row, bench_settings, emulators, make_project, run_child
from storycore.comfyui import ComfyUIClient
from storycore.engine import graph_options
from storycore.errors import ComfyUIError
from storycore.panels import panels_from_project
from storycore.project import load_project
from storycore.workflows import preflight_panels

# The product's call: peak memory of a 2000-panel board at most 1.3x a 100-panel one (the
# manifest stays in project.json, Data Contract v1, so it grows with the board).
MEMORY_TARGET = 1.30
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "controlnet", "clip_vision", "ipadapter")


async def _render(work: Path, name: str, panels: int) -> dict[str, Any]:
    root = make_project(work / name, panels)
    async with emulators(1, work / f"emu-{name}", step_seconds=0.0) as (emu,):
        result = await run_child(emu.url, str(root), "--breakdown")
    if result.get("rendered", 0) + result.get("placeholder", 0) != panels:
        raise RuntimeError(f"{name}: rendered {result} of {panels}")
    return result


async def _preflight_seconds(work: Path, panels: int) -> float:
    root = make_project(work / "preflight", panels)
    settings = bench_settings()
    async with (
        emulators(1, work / "emu-preflight", step_seconds=0.0) as (emu,),
        ComfyUIClient(emu.url) as client,
    ):
        object_info = await client.object_info()
        models: dict[str, list[str]] = {}
        for folder in MODEL_FOLDERS:
            try:
                models[folder] = await client.models(folder)
            except ComfyUIError:  # a folder this server does not have (like the engine does)
                models[folder] = []

    def measure() -> float:
        project = load_project(root)
        started = time.perf_counter()
        board = panels_from_project(project, settings, None)
        report = preflight_panels(board, object_info, models, graph_options(settings))
        elapsed = time.perf_counter() - started
        if report.errors:
            raise RuntimeError(f"preflight found problems: {report.errors[:3]}")
        return elapsed

    return min([await asyncio.to_thread(measure) for _ in range(3)])


async def run(work: Path, *, quick: bool) -> list[Row]:
    n_cpu = 200 if quick else 1000
    small, large = (50, 400) if quick else (100, 2000)
    cpu = await _render(work, "cpu", n_cpu)
    per_panel_ms = cpu["cpu"] / n_cpu * 1000
    preflight = await _preflight_seconds(work, 1000)
    mem_small = await _render(work, "mem-small", small)
    mem_large = await _render(work, "mem-large", large)
    growth = mem_large["peak_rss_kib"] / mem_small["peak_rss_kib"]
    breakdown = cpu["cpu_breakdown"]
    board = breakdown.get("write_board (engine/_engine.py _finish_project)", 0.0)
    no_board_ms = (cpu["cpu"] - board) / n_cpu * 1000
    before_board = (
        mem_large["cpu_breakdown"]["peak_rss_kib_before_write_board"]
        / mem_small["cpu_breakdown"]["peak_rss_kib_before_write_board"]
    )
    return [
        Row(
            "overhead",
            f"client CPU per panel, {n_cpu} panels (ms)",
            per_panel_ms,
            "< 5",
            per_panel_ms < 5,
            {
                "cpu_s": cpu["cpu"],
                "wall_s": cpu["wall"],
                "panels": n_cpu,
                "cpu_s_by_step": {
                    k: round(v, 3) for k, v in breakdown.items() if not k.startswith("peak")
                },
            },
        ),
        Row(
            "overhead",
            "  same, without the storyboard sheet refresh (ms)",
            no_board_ms,
            "< 5",
            no_board_ms < 5,
            {"write_board_cpu_s": board},
        ),
        Row(
            "overhead",
            "preflight + graph building, 1000 panels (s)",
            preflight,
            "< 1",
            preflight < 1,
            {"best_of": 3},
        ),
        Row(
            "memory",
            f"peak RSS {large} / {small} panels",
            growth,
            f"<= {MEMORY_TARGET:.2f}",
            growth <= MEMORY_TARGET,
            {
                f"peak_rss_{small}_mib": mem_small["peak_rss_kib"] / 1024,
                f"peak_rss_{large}_mib": mem_large["peak_rss_kib"] / 1024,
                f"cpu_ms_per_panel_{large}": mem_large["cpu"] / large * 1000,
                f"wall_{large}_s": mem_large["wall"],
            },
        ),
        Row(
            "memory",
            "  same, peak before the storyboard sheet refresh",
            before_board,
            f"<= {MEMORY_TARGET:.2f}",
            before_board <= MEMORY_TARGET,
            {
                f"peak_rss_{n}_mib_before_sheet": m["cpu_breakdown"][
                    "peak_rss_kib_before_write_board"
                ]
                / 1024
                for n, m in ((small, mem_small), (large, mem_large))
            },
        ),
    ]
