"""Following a submitted prompt to its end, on a backend that may go down meanwhile.

:func:`follow_prompt` waits for the prompt's outcome and streams its progress; a backend
marked down is given ``grace`` seconds to come back before the prompt is reported lost.
:func:`withdraw` then takes the prompt off that backend (deleted from its queue, or
interrupted) before the panel is submitted elsewhere, so a server that still renders while it
fails its health probes does not render the panel a second time. :func:`look_up_prompt` says
what a server knows of a prompt: through ``GET /api/jobs/{id}`` where it has today's jobs API
(ComfyUI server.py @ 5e14d797), else ``/history`` and ``/queue`` as 0.3.64 needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from storycore.comfyui import (
    CancelOutcome,
    ComfyUIClient,
    OverallProgress,
    PromptHandle,
    PromptResult,
    PromptStatus,
    is_canonical_prompt_id,
)
from storycore.comfyui.events import NodeProgress
from storycore.engine._backends import Backend
from storycore.engine._events import EventSink, PanelProgress
from storycore.errors import ComfyUIError, PromptLost, StoryCoreError
from storycore.journal import Journal

__all__ = ["SeenPrompt", "follow_prompt", "journal_text", "look_up_prompt", "withdraw"]

_log = logging.getLogger("storycore.engine")


@dataclass(frozen=True)
class SeenPrompt:
    """What a server knows of one prompt: how it ended (``None`` while it has not, or when the
    server does not know it), whether it is queued or running, and, from the jobs API, a
    completed prompt's outputs (no need to follow it)."""

    ended: PromptStatus | None
    queued: bool
    result: PromptResult | None = None
    via: str = "/history"


async def look_up_prompt(client: ComfyUIClient, prompt_id: str) -> SeenPrompt:
    """Ask ``/api/jobs/{id}`` where the server has a jobs API (it knows pending, running and
    finished jobs alike, with their outputs); a job it does not know, or a server without it,
    is looked up in ``/history`` and then ``/queue``."""
    if is_canonical_prompt_id(prompt_id) and await client.has_jobs_api():
        record = await client.job(prompt_id)
        if record is not None and record.finished:
            success = record.prompt_status is PromptStatus.SUCCESS and record.has_outputs
            result = record.result() if success and record.result().files else None
            return SeenPrompt(record.prompt_status, False, result, via="/api/jobs")
        if record is not None and record.queued:
            return SeenPrompt(None, True, via="/api/jobs")
    entry = await client.history(prompt_id)
    if entry is not None:
        return SeenPrompt(entry.status, False)
    return SeenPrompt(None, (await client.queue()).contains(prompt_id), via="/queue")


def journal_text(err: BaseException) -> str:
    """An error as journal text: lone surrogates (which UTF-8 cannot hold) as U+FFFD."""
    return str(err).encode("utf-8", "replace").decode("utf-8")


async def _pump_progress(handle: PromptHandle, shot_id: str, emit: EventSink) -> None:
    """Overall progress as nodes finish, and each sampler step (``progress`` value/max) with
    the class of the node that reports it."""
    async for event in handle.events():
        if isinstance(event, OverallProgress):
            node_class = handle.class_type(event.node_id)
            emit(PanelProgress(shot_id, event.fraction, node=event.node_id, node_class=node_class))
        elif isinstance(event, NodeProgress) and event.max:
            emit(
                PanelProgress(
                    shot_id,
                    handle.progress,
                    step=int(event.value),
                    steps=int(event.max),
                    node=event.node_id,
                    node_class=handle.class_type(event.node_id),
                )
            )


async def follow_prompt(
    handle: PromptHandle, shot_id: str, emit: EventSink, backend: Backend, grace: float
) -> PromptResult:
    """Wait for the prompt's outcome, streaming progress.

    When the backend is marked down, the prompt is not given up at once: a busy server may just
    miss a probe. Only if the backend stays down for ``grace`` seconds is the prompt reported
    lost (so the panel can go to another server); if it answers again, following goes on and
    the tracker settles the prompt from ``/history`` and ``/queue``.
    """
    pump = asyncio.create_task(_pump_progress(handle, shot_id, emit))
    result_task = asyncio.ensure_future(handle.result())
    waiters: set[asyncio.Future[Any]] = set()
    try:
        while True:
            down_task = asyncio.ensure_future(backend.down.wait())
            waiters.add(down_task)
            await asyncio.wait({result_task, down_task}, return_when=asyncio.FIRST_COMPLETED)
            if result_task.done():
                return result_task.result()
            up_task = asyncio.ensure_future(backend.up.wait())
            waiters.add(up_task)
            await asyncio.wait({result_task, up_task}, timeout=grace)
            if result_task.done():
                return result_task.result()
            if not up_task.done():
                raise PromptLost(
                    f"the server stayed down for {grace:g} s while prompt {handle.prompt_id} "
                    "was queued or running",
                    where=shot_id,
                    hint="it will be submitted again",
                )
    finally:
        for task in (pump, result_task, *waiters):
            task.cancel()
        for task in (pump, result_task, *waiters):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def withdraw(
    handle: PromptHandle, backend: Backend, journal: Journal, err: StoryCoreError
) -> PromptResult | None:
    """Take a prompt off ``backend`` before its panel is rendered elsewhere.

    The server stopped answering its health probes, or the prompt ran past its deadline, but
    the server may still render it: the prompt is deleted from its queue or interrupted (a
    bounded try). If it turns out to have finished meanwhile, its result is returned, so the
    panel is collected instead of rendered twice; else ``None`` and the journal closes it
    (``cancelled``, or ``lost`` when the server cannot be reached or no longer has it).
    """
    bound = min(10.0, max(2.0, 2 * backend.client.timeouts.connect))
    prompt_id = handle.prompt_id
    try:
        async with asyncio.timeout(bound):
            outcome = await backend.tracker.cancel(prompt_id)
    except Exception as exc:  # unreachable, too slow, or an answer that cannot be read
        why = exc.message if isinstance(exc, ComfyUIError) else f"no answer within {bound:g} s"
        if not isinstance(exc, ComfyUIError | TimeoutError):
            why = f"{type(exc).__name__} reading its answer"
        _log.warning("could not withdraw prompt %s from %s: %s", prompt_id, backend.url, why)
        await asyncio.to_thread(
            journal.append, "lost", prompt_id=prompt_id, error=journal_text(err), withdraw=why
        )
        return None
    _log.debug("prompt %s withdrawn from %s: %s", prompt_id, backend.url, outcome.value)
    if not handle.done():
        # Interrupted or gone: see how it ended (a prompt that finished is used, not redone).
        with contextlib.suppress(ComfyUIError):
            return await handle.result(timeout=bound)
        # The tracker could not tell (its /history was empty): the jobs API may know.
        with contextlib.suppress(ComfyUIError, TimeoutError):
            async with asyncio.timeout(bound):
                seen = await look_up_prompt(backend.client, prompt_id)
            if seen.result is not None:
                return seen.result
    event = "lost" if outcome is CancelOutcome.NOT_FOUND else "cancelled"
    await asyncio.to_thread(
        journal.append, event, prompt_id=prompt_id, error=journal_text(err), withdraw=outcome.value
    )
    return None
