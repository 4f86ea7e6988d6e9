"""How the tracker settles prompts beside the WebSocket: deadlines, polling, the history.

:class:`Supervision` is the half of :class:`~storycore.comfyui.tracker.PromptTracker` that
does not wait for frames. Every tick it ends the prompts whose deadline or idle timeout
passed, then starts a poll of ``/queue`` and ``/history/{id}`` if one is due: the poll runs as
its own task, bounded, so a server that never finishes an answer delays no deadline. A
finished prompt's outputs are read from its history entry (:meth:`Supervision._finalize`); an
entry that makes the parser raise an unexpected error fails the prompt at once, naming the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from storycore.comfyui._budget import PromptBudget
from storycore.comfyui._handle import PromptHandle, PromptQueued
from storycore.comfyui._models import HistoryEntry, PromptStatus
from storycore.comfyui._outcomes import lost, settle_from_history, timed_out
from storycore.comfyui._transport import ClientTimeouts
from storycore.comfyui._wsfeed import WebSocketFeed
from storycore.comfyui.client import ComfyUIClient
from storycore.comfyui.events import ExecutionStarted
from storycore.errors import ComfyUIError, ServerResponseError

__all__ = ["Supervision"]

_log = logging.getLogger("storycore.comfyui.tracker")
_RECENT_DONE = 4096


class _Failed:
    """A history read that failed: the prompt is neither found nor known to be absent."""

    def __init__(self, error: ComfyUIError) -> None:
        self.error = error


class _Unreadable:
    """A history answer that made the parser raise an unexpected error: it will not get
    better by asking again, so the prompt fails with ``error``."""

    def __init__(self, error: ServerResponseError) -> None:
        self.error = error


class Supervision:
    """Deadlines, polling and history reading for the prompts a tracker follows (a mixin:
    :class:`~storycore.comfyui.tracker.PromptTracker` sets these attributes up)."""

    client: ComfyUIClient
    timeouts: ClientTimeouts
    _handles: dict[str, PromptHandle]
    _budgets: dict[PromptHandle, PromptBudget]
    _recently_done: OrderedDict[str, None]
    _feed: WebSocketFeed
    _last_poll: float
    _running_prompt: str | None
    _tasks: set[asyncio.Task[Any]]
    _poll_task: asyncio.Task[None] | None
    _closed: bool

    @property
    def _server(self) -> str:
        return self.client.address.url

    @property
    def connected(self) -> bool:
        return self._feed.connected

    def _ws_covers(self, handle: PromptHandle) -> bool:
        return self.connected and handle.client_id == self._feed.client_id

    # ------------------------------------------------------------------ completion
    def _start_finalizer(self, handle: PromptHandle) -> None:
        if handle.finalizer is None and not handle.done():
            handle.state = "finishing"
            handle.finishing_since = time.monotonic()
            handle.finalizer = self._spawn(self._finalize(handle))

    async def _finalize(self, handle: PromptHandle) -> None:
        """Read ``/history/{id}`` until it holds the prompt (bounded by lost_grace)."""
        if self._ws_covers(handle) and not handle.server_done.is_set():
            # History is written after execution_success is sent: wait for executing{null}.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, self.timeouts.lost_grace)):
                    await handle.server_done.wait()
        start = time.monotonic()
        delay = min(0.05, self.timeouts.poll_interval)
        while not handle.done():
            entry = await self._read_history(handle)
            if isinstance(entry, _Unreadable):
                self._fail(handle, entry.error)
                return
            if isinstance(entry, _Failed):
                _log.debug("history of %s not readable yet: %s", handle.prompt_id, entry.error)
            elif entry is not None and entry.status is not PromptStatus.UNKNOWN:
                self._complete_from_history(handle, entry, via="websocket")
                return
            if time.monotonic() - start >= self.timeouts.lost_grace:
                self._give_up_on_history(handle)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.timeouts.poll_interval)

    def _complete_from_history(
        self, handle: PromptHandle, entry: HistoryEntry, *, via: str
    ) -> None:
        try:
            settle_from_history(self._server, handle, entry, via=via)
        except Exception as exc:  # odd values the history parser let through
            self._fail(handle, self._unreadable(handle, exc).error)
            return
        self._forget(handle)

    def _fail(self, handle: PromptHandle, error: ComfyUIError) -> None:
        handle.fail("error", error)
        self._forget(handle)

    def _unreadable(self, handle: PromptHandle, exc: BaseException) -> _Unreadable:
        _log.debug("history of %s cannot be read", handle.prompt_id, exc_info=exc)
        where = self.client.address.http_url("/history/" + handle.prompt_id)
        return _Unreadable(
            ServerResponseError(
                f"the server's history entry for prompt {handle.prompt_id} cannot be read "
                f"({type(exc).__name__}: {str(exc)[:200]})",
                where=str(where),
                hint="the server sent values no ComfyUI sends; check what answers at this URL",
            )
        )

    async def _read_history(
        self, handle: PromptHandle
    ) -> HistoryEntry | _Failed | _Unreadable | None:
        """The prompt's history entry; ``None`` while there is none; :class:`_Failed` when the
        read failed (it may work next time); :class:`_Unreadable` when the answer made the
        parser raise an unexpected error."""
        try:
            return await self.client.history(handle.prompt_id)
        except ComfyUIError as exc:
            return _Failed(exc)
        except Exception as exc:
            return self._unreadable(handle, exc)

    def _forget(self, handle: PromptHandle) -> None:
        if self._handles.get(handle.prompt_id) is handle:
            del self._handles[handle.prompt_id]
        self._budgets.pop(handle, None)
        self._recently_done[handle.prompt_id] = None
        while len(self._recently_done) > _RECENT_DONE:
            self._recently_done.popitem(last=False)
        if self._running_prompt == handle.prompt_id:
            self._running_prompt = None

    # ------------------------------------------------------------------ supervision / polling
    async def _supervise(self) -> None:
        """Every tick: end the prompts whose deadline or idle timeout passed, then start a poll
        if one is due. A poll runs as its own task, bounded, so a server that never finishes
        answering ``/queue`` or ``/history`` delays no deadline."""
        tick = max(0.005, min(self.timeouts.poll_interval, self.timeouts.watchdog / 4, 0.5))
        while not self._closed:
            await asyncio.sleep(tick)
            try:
                self._expire()
                if self._poll_task is None or self._poll_task.done():
                    due = self._due()
                    if due:
                        self._poll_task = self._spawn(self._bounded_poll(due))
            except Exception:  # a bug must not stop the supervision of every prompt
                _log.exception("prompt supervision failed")

    def _expire(self) -> None:
        now = time.monotonic()
        for handle in [h for h in self._handles.values() if not h.done()]:
            if handle.deadline is not None and now > handle.deadline:
                handle.fail(
                    "timeout", timed_out(self._server, handle.prompt_id, "its deadline passed")
                )
                self._forget(handle)
            elif now - handle.last_alive > handle.idle_timeout:
                handle.fail(
                    "timeout",
                    timed_out(self._server, handle.prompt_id, "the server showed no sign of it"),
                )
                self._forget(handle)

    def _due(self) -> list[PromptHandle]:
        """The prompts to look up in ``/queue`` and ``/history`` now (none between polls)."""
        now = time.monotonic()
        active = [h for h in self._handles.values() if not h.done() and h.finalizer is None]
        if not active or now - self._last_poll < self.timeouts.poll_interval:
            return []
        silent = self.connected and now - self._feed.last_message > self.timeouts.watchdog
        due = [
            h
            for h in active
            if silent
            or not self._ws_covers(h)
            or now - h.last_checked >= min(self.timeouts.watchdog, h.idle_timeout / 3)
            or h.absent_since is not None
        ]
        if due:
            self._last_poll = now
        return due

    async def _bounded_poll(self, handles: list[PromptHandle]) -> None:
        bound = max(self.timeouts.read, self.timeouts.poll_interval * 2)
        try:
            async with asyncio.timeout(bound):
                await self._poll(handles)
        except ComfyUIError as exc:  # a ServerTimeout of the request itself included
            _log.debug("poll of %s failed: %s", self.client.address.url, exc)
        except TimeoutError:
            _log.debug("poll of %s took over %g s: given up", self.client.address.url, bound)
        except Exception:  # an answer the queue parser could not take: try again later
            _log.debug("poll of %s failed", self.client.address.url, exc_info=True)

    async def _poll(self, handles: list[PromptHandle]) -> None:
        queue = await self.client.queue()
        now = time.monotonic()
        absent: list[PromptHandle] = []
        for handle in handles:
            if handle.done():
                continue
            handle.last_checked = now
            position = queue.position(handle.prompt_id)
            if position is None:
                absent.append(handle)
                continue
            handle.submitted = True
            handle.alive()
            if position == 0 and handle.state in ("watching", "queued"):
                handle.state = "running"
                if ExecutionStarted not in handle.seen:
                    handle.feed(ExecutionStarted(handle.prompt_id))
            elif position > 0 and position != handle.position:
                handle.state = "queued"
                handle.position = position
                handle.emit(PromptQueued(handle.prompt_id, position, handle.number))
        # Not in the queue: finished (history), not submitted yet, or lost.
        entries = await asyncio.gather(*(self._read_history(h) for h in absent))
        for handle, entry in zip(absent, entries, strict=True):
            if handle.done():
                continue
            if isinstance(entry, _Unreadable):
                self._fail(handle, entry.error)
            elif isinstance(entry, HistoryEntry) and entry.status is not PromptStatus.UNKNOWN:
                self._complete_from_history(handle, entry, via="polling")
            elif entry is not None or not handle.submitted:  # a failed read proves nothing
                continue
            elif handle.absent_since is None:
                handle.absent_since = now
            elif now - handle.absent_since >= self.timeouts.lost_grace:
                self._give_up_on_history(handle)

    def _give_up_on_history(self, handle: PromptHandle) -> None:
        """No history after ``lost_grace``: success from the WS outputs if the WS saw it
        succeed, else lost."""
        try:
            settled = handle.ws_success and handle.succeed(None, via="websocket")
        except Exception as exc:
            self._fail(handle, self._unreadable(handle, exc).error)
            return
        if not settled:
            handle.fail("lost", lost(self._server, handle.prompt_id, self.timeouts.lost_grace))
        self._forget(handle)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
