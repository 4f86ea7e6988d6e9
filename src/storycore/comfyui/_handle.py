"""One followed prompt: its event stream, progress, node timings and final outcome.

The :class:`PromptHandle` is fed by the tracker (WebSocket events and polling results); it never
does I/O itself. Its outcome is settled exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from storycore.comfyui._models import (
    HistoryEntry,
    NodeOutput,
    NodeTiming,
    PromptResult,
    PromptStatus,
    node_sort_key,
    parse_node_output,
)
from storycore.comfyui.events import (
    CachedNodes,
    Event,
    ExecutionDone,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSuccess,
    NodeExecuted,
    NodeExecuting,
    NodeProgress,
    PreviewImage,
    ProgressState,
)
from storycore.errors import ComfyUIError, ServerTimeout

__all__ = ["OverallProgress", "PromptCompleted", "PromptHandle", "PromptQueued", "TrackerEvent"]

_MAX_BUFFERED_EVENTS = 4096
_MAX_BUFFERED_PREVIEWS = 16


@dataclass(frozen=True)
class PromptQueued:
    """The prompt waits in the queue; ``position`` 1 = next (``None`` if not known yet)."""

    prompt_id: str
    position: int | None
    number: float | None = None


@dataclass(frozen=True)
class OverallProgress:
    """Overall progress of the prompt in [0, 1]; never goes down."""

    prompt_id: str
    fraction: float
    node_id: str | None = None


@dataclass(frozen=True)
class PromptCompleted:
    """Always the last event of a prompt, emitted exactly once.

    ``status`` is ``success``, ``error``, ``interrupted``, ``lost``, ``timeout`` or ``closed``.
    """

    prompt_id: str
    status: str
    result: PromptResult | None = None
    error: ComfyUIError | None = None


TrackerEvent = Event | PromptQueued | OverallProgress | PromptCompleted


_MAX_SERVER_SECONDS = 7 * 24 * 3600.0


def _timestamp(value: object, current: int | None) -> int | None:
    """A server timestamp in ms, if it is a plausible one (an int, not a bool); else keep
    ``current``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53:
        return value
    return current


class PromptHandle:
    """Follows one prompt. Created by ``PromptTracker.watch``; read with :meth:`events` and
    :meth:`result`."""

    def __init__(
        self,
        prompt_id: str,
        *,
        client_id: str | None,
        graph: Mapping[str, Any] | None,
        deadline: float | None,
        idle_timeout: float,
    ) -> None:
        self.prompt_id = prompt_id
        self.client_id = client_id
        now = time.monotonic()
        self.created = now
        self.deadline = None if deadline is None else now + deadline
        self.idle_timeout = idle_timeout
        self.last_alive = now
        self.last_checked = now
        self.absent_since: float | None = None
        self.submitted = False
        self.number: float | None = None
        self.state = "watching"  # watching | queued | running | finishing | done
        self.position: int | None = None
        self._class_types: dict[str, str] = {}
        if graph:
            for node_id, node in graph.items():
                if isinstance(node, Mapping):
                    self._class_types[str(node_id)] = str(node.get("class_type", ""))
        self._total = len(self._class_types) or None
        self._cached: set[str] = set()
        self._finished: set[str] = set()
        self._known: set[str] = set()
        self._running: str | None = None
        self._running_fraction = 0.0
        self._started: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        self.progress = 0.0
        # (step, steps) of the last progress / progress_state of a running node: what a
        # preview frame shows (ComfyUI sends one per sampler step).
        self.sampler_step: tuple[int, int] | None = None
        self.ws_success = False
        self.ws_outputs: dict[str, NodeOutput] = {}
        # The WebSocket connection (its number) that delivered execution_start live: when the
        # same connection then delivers execution_success, the stream held every event.
        self.ws_stream: int | None = None
        self.expected_outputs: tuple[str, ...] = ()  # nodes whose executed frames must come
        self.finishing_since: float | None = None
        self.finalizer: asyncio.Task[None] | None = None
        self.server_done = asyncio.Event()
        self._events: collections.deque[TrackerEvent] = collections.deque(
            maxlen=_MAX_BUFFERED_EVENTS
        )
        self._wakeup = asyncio.Event()
        self._future: asyncio.Future[PromptResult] = asyncio.get_running_loop().create_future()
        self._completed_status: str | None = None
        self.seen: set[type[Event]] = set()
        # The server's own clock (ms since the epoch) at execution_start / execution_success,
        # from the WebSocket or the history entry's status messages.
        self._server_start_ms: int | None = None
        self._server_end_ms: int | None = None

    # ------------------------------------------------------------------ reading
    def done(self) -> bool:
        return self._future.done()

    @property
    def status(self) -> str | None:
        """The final status once done (see :class:`PromptCompleted`), else ``None``."""
        return self._completed_status

    async def result(self, timeout: float | None = None) -> PromptResult:  # noqa: ASYNC109
        """Wait for the outcome: a :class:`PromptResult`, or raise ExecutionFailed,
        PromptInterrupted, PromptLost, ServerTimeout (or ComfyUIError if the tracker closed)."""
        if timeout is None:
            return await asyncio.shield(self._future)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._future)
        except TimeoutError:
            if self._future.done():
                return self._future.result()
            raise ServerTimeout(
                f"prompt {self.prompt_id} did not finish within {timeout:g} s",
                where=self.prompt_id,
                hint="raise the timeout, or check the server",
            ) from None

    async def events(self) -> AsyncIterator[TrackerEvent]:
        """Every event of this prompt, in order, ending with one :class:`PromptCompleted`.

        One consumer only: events are handed out once.
        """
        while True:
            while self._events:
                event = self._events.popleft()
                yield event
                if isinstance(event, PromptCompleted):
                    return
            self._wakeup.clear()
            await self._wakeup.wait()

    @property
    def server_execution_s(self) -> float | None:
        """How long the server says it ran the prompt (execution_start to execution_success on
        its own clock); ``None`` when it did not say or the times make no sense."""
        start, end = self._server_start_ms, self._server_end_ms
        if start is None or end is None:
            return None
        seconds = (end - start) / 1000.0
        return seconds if 0.0 <= seconds <= _MAX_SERVER_SECONDS else None

    def class_type(self, node_id: str | None) -> str | None:
        """The class of a node of this prompt's graph (``KSampler``), if the graph is known."""
        return self._class_types.get(node_id) if node_id is not None else None

    def timings(self) -> dict[str, NodeTiming]:
        nodes = self._cached | set(self._started) | set(self._ended)
        return {
            node: NodeTiming(
                node_id=node,
                class_type=self._class_types.get(node),
                started=self._started.get(node),
                finished=self._ended.get(node),
                cached=node in self._cached,
            )
            for node in sorted(nodes, key=node_sort_key)
        }

    def __repr__(self) -> str:
        return f"PromptHandle({self.prompt_id!r}, state={self.state}, progress={self.progress:.2f})"

    # ------------------------------------------------------------------ feeding (tracker only)
    def emit(self, event: TrackerEvent) -> None:
        if self.done() and not isinstance(event, PromptCompleted):
            return
        if isinstance(event, PreviewImage):
            # Previews are big: keep only the latest few while nobody reads the stream.
            previews = [e for e in self._events if isinstance(e, PreviewImage)]
            for old in previews[: max(0, len(previews) - _MAX_BUFFERED_PREVIEWS + 1)]:
                self._events.remove(old)
        self._events.append(event)
        self._wakeup.set()

    def alive(self) -> None:
        self.last_alive = time.monotonic()
        self.absent_since = None

    def feed(self, event: Event) -> None:
        """Apply a WebSocket event for this prompt and pass it on."""
        if self.done() or (isinstance(event, ExecutionStarted) and ExecutionStarted in self.seen):
            return
        self.alive()
        self.submitted = True
        self.seen.add(type(event))
        now = time.monotonic()
        if isinstance(event, ExecutionStarted):
            self.state = "running"
            self._server_start_ms = _timestamp(event.timestamp, self._server_start_ms)
        elif isinstance(event, CachedNodes):
            self._cached.update(event.nodes)
            self._known.update(event.nodes)
        elif isinstance(event, NodeExecuting):
            self.state = "running"
            self._node_started(event.node_id, now)
        elif isinstance(event, NodeProgress):
            if event.max > 0:
                self.sampler_step = (int(event.value), int(event.max))
            node = event.node_id or self._running
            if node is not None and node == self._running and event.max > 0:
                self._running_fraction = min(1.0, max(0.0, event.value / event.max))
        elif isinstance(event, ProgressState):
            for item in event.nodes:
                self._known.add(item.node_id)
                if item.state == "running":
                    if item.max > 1:  # a sampler's steps (a node's own 0/1 is no step)
                        self.sampler_step = (int(item.value), int(item.max))
                    if item.node_id not in self._started:
                        self._started[item.node_id] = now
                    if item.node_id == self._running and item.max > 0:
                        self._running_fraction = max(
                            self._running_fraction, min(1.0, item.value / item.max)
                        )
                elif item.state == "finished" and item.node_id not in self._cached:
                    self._node_finished(item.node_id, now)
        elif isinstance(event, NodeExecuted):
            self.ws_outputs[event.node_id] = parse_node_output(event.node_id, event.output)
            if event.node_id not in self._cached:
                self._node_finished(event.node_id, now)
        elif isinstance(event, ExecutionSuccess):
            self.ws_success = True
            self._server_end_ms = _timestamp(event.timestamp, self._server_end_ms)
            self._finish_running(now)
        elif isinstance(event, ExecutionDone):
            self._finish_running(now)
            self.server_done.set()
        elif isinstance(event, ExecutionError | ExecutionInterrupted):
            self.state = "finishing"
        self.emit(event)
        if not isinstance(event, PreviewImage):
            self._update_progress()

    def _node_started(self, node_id: str, now: float) -> None:
        if self._running is not None and self._running != node_id:
            self._node_finished(self._running, now)
        self._running = node_id
        self._running_fraction = 0.0
        self._known.add(node_id)
        self._started.setdefault(node_id, now)

    def _node_finished(self, node_id: str, now: float) -> None:
        self._known.add(node_id)
        self._started.setdefault(node_id, now)
        self._ended.setdefault(node_id, now)
        self._finished.add(node_id)
        if self._running == node_id:
            self._running = None
            self._running_fraction = 0.0

    def _finish_running(self, now: float) -> None:
        if self._running is not None:
            self._node_finished(self._running, now)

    def _update_progress(self, *, complete: bool = False) -> None:
        if complete:
            fraction = 1.0
        else:
            total = max(self._total or 0, len(self._known), 1)
            done = len(self._cached | self._finished)
            partial = self._running_fraction if self._running not in (None, *self._finished) else 0
            fraction = min(0.999, (done + partial) / total)
        if fraction > self.progress + 1e-9:
            self.progress = fraction
            self._events.append(OverallProgress(self.prompt_id, fraction, self._running))
            self._wakeup.set()

    # ------------------------------------------------------------------ outcome (tracker only)
    def succeed(self, history: HistoryEntry | None, *, via: str) -> bool:
        """Settle as success with the history outputs (or, lacking history, the WS outputs)."""
        if self.done():
            return False
        outputs: Mapping[str, NodeOutput] = history.outputs if history else dict(self.ws_outputs)
        if history is not None:
            for name, data in history.messages:
                if name == "execution_cached":
                    nodes = data.get("nodes")
                    if isinstance(nodes, list):
                        self._cached.update(str(n) for n in nodes)
                elif name == "execution_start":
                    self._server_start_ms = _timestamp(data.get("timestamp"), None)
                elif name == "execution_success":
                    self._server_end_ms = _timestamp(data.get("timestamp"), None)
        self._update_progress(complete=True)
        result = PromptResult(
            prompt_id=self.prompt_id,
            status=PromptStatus.SUCCESS,
            outputs=outputs,
            timings=self.timings(),
            cached_nodes=tuple(sorted(self._cached)),
            elapsed=time.monotonic() - self.created,
            via=via,
            history=history,
        )
        self._settle("success", result=result)
        return True

    def fail(self, status: str, error: ComfyUIError) -> bool:
        if self.done():
            return False
        self._settle(status, error=error)
        return True

    def _settle(
        self, status: str, *, result: PromptResult | None = None, error: ComfyUIError | None = None
    ) -> None:
        self.state = "done"
        self._completed_status = status
        if result is not None:
            self._future.set_result(result)
        elif error is not None:
            self._future.set_exception(error)
            self._future.exception()  # mark retrieved: callers may only use events()
        self.emit(PromptCompleted(self.prompt_id, status, result=result, error=error))
        if self.finalizer is not None and self.finalizer is not asyncio.current_task():
            self.finalizer.cancel()
