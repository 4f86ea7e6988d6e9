"""One measured engine run in a fresh process: ``python -m bench._child URL PROJECT [--profile F]``.

Prints one JSON line: wall and CPU (process) seconds of the render, peak RSS (ru_maxrss, KiB)
before and after, and the outcome counts. A fresh process per run keeps one benchmark's garbage
and allocator state out of the next one's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import bench_settings
from storycore.engine import EngineEvent, ImageEngine, PanelDone, RenderRequest


async def _render(url: str, project: Path, depth: int) -> dict[str, float]:
    last_done = 0.0

    def on_event(event: EngineEvent) -> None:
        nonlocal last_done
        if isinstance(event, PanelDone):
            last_done = time.time()

    engine = ImageEngine(bench_settings(**{"render.queue_depth": depth}), on_event=on_event)
    summary = await engine.render(RenderRequest(project, backends=tuple(url.split(","))))
    return {**summary.counts, "t_last_done": last_done}


def _instrument() -> dict[str, float]:
    """Attribute CPU (``time.thread_time`` of the calling thread) to the engine's blocking steps.

    Each wrapped function runs whole in one thread (``asyncio.to_thread``), so its thread time is
    its CPU cost. Patched in this child process only, for ``--breakdown``.
    """
    import storycore.engine._persist as persist_mod
    import storycore.journal as journal_mod
    import storycore.review._board as board

    spent: dict[str, float] = {}

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # the engine moved it: that step is simply not attributed
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "write_board":
                spent["peak_rss_kib_before_write_board"] = float(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                )
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - started

        setattr(owner, name, timed)

    wrap(persist_mod, "atomic_write_bytes", "project.json writes (engine/_persist.py flush)")
    wrap(board, "write_board", "write_board (engine/_engine.py _finish_project)")
    wrap(persist_mod.ProjectWriter, "land", "ProjectWriter.land: image, sidecar, journal, thumb")
    wrap(journal_mod.Journal, "append", "Journal.append (journal.py; done is also in land)")
    return spent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="server URL(s), comma-separated")
    parser.add_argument("project", type=Path)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    spent = _instrument() if args.breakdown else {}
    thread0 = time.thread_time()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    epoch0 = time.time()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        counts = profiler.runcall(asyncio.run, _render(args.url, args.project, args.depth))
        profiler.dump_stats(str(args.profile))
    else:
        counts = asyncio.run(_render(args.url, args.project, args.depth))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.breakdown:
        spent["event loop thread (asyncio, HTTP, WebSocket, tracker)"] = (
            time.thread_time() - thread0
        )
    json.dump(
        {
            "wall": wall,
            "cpu": cpu,
            "user_s": usage.ru_utime,
            "system_s": usage.ru_stime,
            "t_start": epoch0,
            "t_end": time.time(),
            "rss_before_kib": rss_before,
            "peak_rss_kib": rss,
            **counts,
            "cpu_breakdown": spent,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
