"""Keeping every server busy: one worker per backend feeding its queue, a health watch per
backend, and the loop that waits for the board to finish or stop (Ctrl-C once: drain, bounded;
twice: cancel). The engine's flags (``stopping``, ``cancelling``) are read, never waited on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from storycore.engine._backends import Backend
from storycore.engine._events import BackendChanged, Notice
from storycore.engine._jobs import PanelJob, pick_next
from storycore.errors import ComfyUIError, RenderError

if TYPE_CHECKING:
    from storycore.engine._engine import ImageEngine, _Run

__all__ = ["mark_down", "schedule"]


async def schedule(engine: ImageEngine, run: _Run, jobs: list[PanelJob]) -> None:
    """Render ``jobs`` across ``run.backends``, grouped by checkpoint, until done or stopped."""
    order = {job.shot_id: i for i, job in enumerate(jobs)}
    jobs = sorted(jobs, key=lambda j: (j.panel.checkpoint, order[j.shot_id]))
    run.pending.extend(jobs)
    workers = [asyncio.create_task(_worker(engine, run, b)) for b in run.backends]
    workers += [asyncio.create_task(_watch_health(engine, run, b)) for b in run.backends]
    try:
        await _wait_until_done(engine, run)
    finally:
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def _wait_until_done(engine: ImageEngine, run: _Run) -> None:
    graceful_deadline: float | None = None
    all_down_since: float | None = None
    while run.pending or run.tasks:
        if engine.stopping:
            run.pending.clear()
            if graceful_deadline is None:
                graceful_deadline = time.monotonic() + engine.settings.comfyui.graceful_shutdown
                engine.emit(
                    Notice(
                        "warning",
                        f"stopping: no new panels; waiting up to "
                        f"{engine.settings.comfyui.graceful_shutdown:g} s for "
                        f"{len(run.in_flight)} running (Ctrl-C again to cancel them)",
                    )
                )
            if engine.cancelling or time.monotonic() >= graceful_deadline:
                await _cancel_in_flight(engine, run)
                return
        if not any(b.healthy for b in run.backends) and not run.tasks and run.pending:
            all_down_since = all_down_since or time.monotonic()
            bound = engine.settings.comfyui.startup_timeout
            if time.monotonic() - all_down_since > bound:
                err = RenderError(
                    f"no backend has answered for {bound:g} s",
                    where=", ".join(b.url for b in run.backends),
                    hint="start ComfyUI again and rerun; finished panels are kept",
                )
                while run.pending:
                    engine.fail(run, run.pending.popleft().shot_id, err)
                return
        else:
            all_down_since = None
        run.changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await run.changed.wait()


async def _cancel_in_flight(engine: ImageEngine, run: _Run) -> None:
    for shot_id, (_job, backend, prompt_id) in list(run.in_flight.items()):
        if prompt_id is None:
            continue
        with contextlib.suppress(ComfyUIError, TimeoutError):
            async with asyncio.timeout(engine.settings.comfyui.connect_timeout):
                await backend.tracker.cancel(prompt_id)
        await asyncio.to_thread(run.journal.append, "cancelled", prompt_id=prompt_id)
        engine.emit(Notice("warning", f"{shot_id}: cancelled prompt {prompt_id} on {backend.url}"))
    tasks = list(run.tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _worker(engine: ImageEngine, run: _Run, backend: Backend) -> None:
    """Keep ``backend``'s queue ``depth`` deep while it is healthy."""
    while not engine.stopping:
        if not backend.healthy or backend.in_flight >= backend.depth or not run.pending:
            await backend.nap(0.5)
            continue
        job = pick_next(run.pending, backend, run.backends)
        if job is None:
            await backend.nap(0.5)
            continue
        backend.in_flight += 1
        backend.last_checkpoint = job.panel.checkpoint
        task = asyncio.create_task(engine.run_job(run, backend, job))
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)


async def _watch_health(engine: ImageEngine, run: _Run, backend: Backend) -> None:
    """Probe ``/system_stats`` every health interval: two misses mark the backend down (its
    running panels go elsewhere); when it answers again it is used again (1 s doubling
    back-off while down, capped at 60 s)."""
    interval = engine.settings.comfyui.health_check_interval
    limit = engine.settings.comfyui.health_check_timeout
    misses = 0
    delay = interval
    while True:
        await asyncio.sleep(delay if not backend.healthy else interval)
        ok = await backend.probe(limit)
        if backend.healthy:
            misses = 0 if ok else misses + 1
            if misses >= 2:
                mark_down(engine, run, backend, "does not answer /system_stats")
                delay = min(1.0, interval)
        elif ok:
            backend.mark_up()
            engine.emit(BackendChanged(backend.url, "healthy", "answering again"))
            misses = 0
        else:
            delay = min(delay * 2, 60.0)


def mark_down(engine: ImageEngine, run: _Run, backend: Backend, why: str) -> None:
    if backend.mark_down():
        engine.emit(BackendChanged(backend.url, "unhealthy", why))
        run.changed.set()
        for other in run.backends:
            other.wake.set()
