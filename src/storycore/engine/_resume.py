"""Resuming after a crash: settle every prompt the journal left open before rendering anew.

For each open prompt on a backend we can reach, asked through today's jobs API where the server
has it (``GET /api/jobs/{id}``: queued, running or finished with its outputs and error; ComfyUI
server.py @ 5e14d797), else through ``/history`` and ``/queue`` as 0.3.64 needs:

- finished and still wanted (same cache key): download it, no new render;
- still queued or running and wanted: follow it to the end like a fresh submission;
- finished but no longer wanted, or failed: close it in the journal;
- nowhere (the server restarted and forgot it): close it as lost; the panel renders again.

Prompts on backends we cannot reach are closed as lost, so a panel is never followed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from storycore.comfyui import PromptResult, PromptStatus
from storycore.engine._events import Notice
from storycore.engine._follow import look_up_prompt
from storycore.engine._jobs import (
    JobOutcome,
    PanelJob,
    collect_output,
    follow_prompt,
    journal_text,
    unexpected_error,
)
from storycore.errors import ComfyUIError, StoryCoreError

if TYPE_CHECKING:
    from storycore.engine._backends import Backend
    from storycore.engine._engine import ImageEngine, _Run
    from storycore.journal import OpenPrompt

__all__ = ["reconcile_journal"]


async def reconcile_journal(engine: ImageEngine, run: _Run, jobs: list[PanelJob]) -> list[PanelJob]:
    """Settle open prompts; return the jobs that still need a fresh render."""
    open_prompts = await asyncio.to_thread(run.journal.open_prompts)
    if not open_prompts:
        return jobs
    by_url = {b.url: b for b in run.backends}
    wanted = {job.shot_id: job for job in jobs}
    remaining = dict(wanted)
    journal = run.journal
    for item in open_prompts:
        backend = by_url.get(item.backend)
        job = wanted.get(item.shot_id)
        if backend is None:
            await asyncio.to_thread(
                journal.append, "lost", prompt_id=item.prompt_id, error="backend not in this run"
            )
            continue
        try:
            seen = await look_up_prompt(backend.client, item.prompt_id)
        except Exception as exc:  # unreachable, or an answer that cannot be read
            err = exc if isinstance(exc, ComfyUIError) else unexpected_error(exc, backend.url)
            engine.emit(Notice("warning", f"could not check prompt {item.prompt_id}: {err}"))
            await asyncio.to_thread(
                journal.append, "lost", prompt_id=item.prompt_id, error=journal_text(err)
            )
            continue
        still_wanted = job is not None and job.fingerprint == item.workflow_sha256
        if seen.ended is PromptStatus.SUCCESS and still_wanted:
            assert job is not None
            try:
                result = seen.result or await _follow_done(engine, backend, item, job.shot_id)
                outcome = await _collect(run, job, backend, item.prompt_id, result)
            except Exception as exc:
                why = exc if isinstance(exc, StoryCoreError) else unexpected_error(exc, backend.url)
                engine.emit(Notice("warning", f"{job.shot_id}: could not pick up: {why}"))
                await asyncio.to_thread(journal.append, "lost", prompt_id=item.prompt_id)
                continue
            await engine.record_outcome(run, job, outcome)
            remaining.pop(job.shot_id, None)
            engine.emit(Notice("info", f"{job.shot_id}: picked up prompt {item.prompt_id}"))
        elif seen.ended is not None:
            event = "done" if seen.ended is PromptStatus.SUCCESS else "failed"
            await asyncio.to_thread(
                journal.append, event, prompt_id=item.prompt_id, note="settled on resume"
            )
        elif seen.queued:
            if still_wanted:
                assert job is not None
                engine.emit(Notice("info", f"{job.shot_id}: following prompt {item.prompt_id}"))
                remaining.pop(job.shot_id, None)
                task = asyncio.create_task(
                    _follow_open(
                        engine, run, job, backend, item.prompt_id, item.record.get("client_id")
                    )
                )
                run.tasks.add(task)
                task.add_done_callback(run.tasks.discard)
            else:
                with contextlib.suppress(ComfyUIError, TimeoutError):
                    async with asyncio.timeout(engine.settings.comfyui.connect_timeout * 2):
                        await backend.tracker.cancel(item.prompt_id)
                await asyncio.to_thread(journal.append, "cancelled", prompt_id=item.prompt_id)
        else:
            await asyncio.to_thread(
                journal.append, "lost", prompt_id=item.prompt_id, error="not on the server"
            )
            if job is not None:
                engine.emit(
                    Notice(
                        "warning",
                        f"{job.shot_id}: prompt {item.prompt_id} was lost; rendering again",
                    )
                )
    return [job for job in jobs if job.shot_id in remaining]


async def _follow_done(
    engine: ImageEngine, backend: Backend, item: OpenPrompt, shot_id: str
) -> PromptResult:
    """A prompt ``/history`` has as done: its outputs through the tracker (which reads them)."""
    handle = backend.tracker.watch(item.prompt_id, client_id=item.record.get("client_id"))
    backend.tracker.mark_submitted(item.prompt_id)
    grace = engine.settings.comfyui.failover_grace
    return await follow_prompt(handle, shot_id, engine.emit, backend, grace)


async def _collect(
    run: _Run, job: PanelJob, backend: object, prompt_id: str, result: object
) -> JobOutcome:
    from storycore.comfyui import PromptResult
    from storycore.engine._backends import Backend

    assert isinstance(backend, Backend) and isinstance(result, PromptResult)
    started = time.monotonic()

    record = await collect_output(
        job=job,
        backend=backend,
        result=result,
        store=run.writer,
        submitted_at=started,
        handle=None,
        prompt_id=prompt_id,
    )
    return JobOutcome(
        record=record, seconds=time.monotonic() - started, backend=backend.url, resumed=True
    )


async def _follow_open(
    engine: ImageEngine,
    run: _Run,
    job: PanelJob,
    backend: object,
    prompt_id: str,
    client_id: object,
) -> None:
    from storycore.engine._backends import Backend

    assert isinstance(backend, Backend)
    handle = backend.tracker.watch(prompt_id, client_id=str(client_id) if client_id else None)
    backend.tracker.mark_submitted(prompt_id)
    run.in_flight[job.shot_id] = (job, backend, prompt_id)
    try:
        grace = engine.settings.comfyui.failover_grace
        result = await follow_prompt(handle, job.shot_id, engine.emit, backend, grace)
        outcome = await _collect(run, job, backend, prompt_id, result)
        await engine.record_outcome(run, job, outcome)
    except Exception as exc:
        err = exc if isinstance(exc, StoryCoreError) else unexpected_error(exc, backend.url)
        await asyncio.to_thread(
            run.journal.append, "lost", prompt_id=prompt_id, error=journal_text(err)
        )
        run.pending.append(job)
    finally:
        run.in_flight.pop(job.shot_id, None)
        run.changed.set()
