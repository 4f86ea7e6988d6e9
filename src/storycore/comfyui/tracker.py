"""Follow prompts to a certain completion: one WebSocket per server, HTTP polling as fallback.

A :class:`PromptTracker` is a per-server hub. It opens the WebSocket (a fresh ``clientId`` per
connection, see ``ComfyUIClient.client_id``) before anything is submitted, and routes events to
the :class:`PromptHandle` of each prompt we follow; other prompts are ignored.

Completion is certain: ``execution_success`` for our prompt on the connection that also
delivered its ``execution_start`` settles it with the outputs of the ``executed`` frames (the
server sends those for cached output nodes too), provided a frame came for every node the
caller named in ``submit(outputs=...)``; after a gap in the stream, or a frame missing,
``/history/{id}`` is read for the outputs instead. When the WebSocket is refused, dropped or
silent for longer than the watchdog, ``/queue`` and ``/history/{id}`` are polled; a prompt that
finished during a gap is reported once. A prompt neither queued, running nor in history for
``lost_grace`` seconds raises :class:`PromptLost`; deadlines and idle timeouts raise
:class:`ServerTimeout`.

Deadlines, polling and history reading live in :mod:`._supervise`; what is kept of each
prompt's frames (bounded, whatever a server sends) in :mod:`._budget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from storycore.comfyui._budget import OrphanFrames, PromptBudget
from storycore.comfyui._handle import PromptCompleted, PromptHandle, PromptQueued
from storycore.comfyui._outcomes import (
    execution_failed,
    interrupted,
)
from storycore.comfyui._supervise import Supervision
from storycore.comfyui._wsfeed import WebSocketFeed
from storycore.comfyui.client import CancelOutcome, ComfyUIClient
from storycore.comfyui.events import (
    Event,
    ExecutionDone,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSuccess,
    NodeExecuting,
    PreviewImage,
    ProgressText,
    ServerStatus,
)
from storycore.errors import (
    ComfyUIError,
    PromptInterrupted,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
)

__all__ = ["PreviewListener", "PromptCompleted", "PromptHandle", "PromptQueued", "PromptTracker"]

_log = logging.getLogger(__name__)
_UNSET: Any = object()

PreviewListener = Callable[[PreviewImage, int | None, int | None], None]
"""``listener(preview, step, steps)``: a prompt's preview frame and the sampler step it shows
(the last ``progress``/``progress_state`` value of a running node; ``None`` when none came)."""


class PromptTracker(Supervision):
    """Per-server hub following many prompts over one WebSocket.

    ``async with PromptTracker(client) as tracker:`` then ``handle = await tracker.submit(g)``
    (or ``tracker.watch(pid)`` before ``client.submit(g, prompt_id=pid)``), then
    ``await handle.result()`` or ``async for event in handle.events()``.
    """

    def __init__(
        self,
        client: ComfyUIClient,
        *,
        use_websocket: bool = True,
        report_positions: bool = True,
    ) -> None:
        self.client = client
        # One GET /queue after each submission, for PromptQueued(position); callers that keep
        # the queue fed themselves (the engine) turn it off and save a request per prompt.
        self.report_positions = report_positions
        self.timeouts = client.timeouts
        self.use_websocket = use_websocket
        self._handles: dict[str, PromptHandle] = {}
        self._budgets: dict[PromptHandle, PromptBudget] = {}
        self._orphans = OrphanFrames()
        self._recently_done: OrderedDict[str, None] = OrderedDict()
        self._feed = WebSocketFeed(client, self._dispatch, self._on_gap)
        self._last_poll = 0.0
        self._running_prompt: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._previews: dict[str, PreviewListener] = {}
        self._main_tasks: list[asyncio.Task[None]] = []
        self._poll_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self.queue_remaining: int | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def ws_connections(self) -> int:
        """How many WebSocket connections were opened so far."""
        return self._feed.connections

    @property
    def mode(self) -> str:
        if self._closed:
            return "closed"
        return "websocket" if self.connected else "polling"

    async def start(self) -> PromptTracker:
        """Open the WebSocket (bounded by the connect timeout) and start supervising.

        If the WebSocket is refused, the tracker polls over HTTP and keeps retrying it.
        """
        if self._started:
            return self
        self._started = True
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.use_websocket:
            self._main_tasks.append(asyncio.create_task(self._feed.run(first)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeouts.connect + 1):
                    await asyncio.shield(first)
        self._main_tasks.append(asyncio.create_task(self._supervise()))
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._previews.clear()
        for handle in list(self._handles.values()):
            handle.fail(
                "closed",
                ComfyUIError(
                    f"stopped following prompt {handle.prompt_id}: the tracker was closed",
                    where=self.client.address.url,
                    hint="the prompt may still run on the server",
                ),
            )
        tasks = [*self._main_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._feed.close()

    async def __aenter__(self) -> PromptTracker:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ following prompts
    def watch(
        self,
        prompt_id: str,
        *,
        client_id: str | None = None,
        graph: Mapping[str, Any] | None = None,
        deadline: float | None = _UNSET,
        idle_timeout: float = _UNSET,
    ) -> PromptHandle:
        """Start following ``prompt_id`` (call it BEFORE submitting it).

        ``client_id`` is the clientId the prompt is (to be) submitted with; default: the
        client's current one. ``graph`` lets overall progress count every node.
        """
        if self._closed:
            raise ComfyUIError(
                "the prompt tracker is closed", where=self.client.address.url, hint="open a new one"
            )
        existing = self._handles.get(prompt_id)
        if existing is not None and not existing.done():
            return existing
        handle = PromptHandle(
            prompt_id,
            client_id=client_id if client_id is not None else self.client.client_id,
            graph=graph,
            deadline=self.timeouts.prompt_deadline if deadline is _UNSET else deadline,
            idle_timeout=self.timeouts.idle_timeout if idle_timeout is _UNSET else idle_timeout,
        )
        self._handles[prompt_id] = handle
        self._budgets[handle] = PromptBudget(prompt_id, lambda n: handle.class_type(n) is not None)
        self._recently_done.pop(prompt_id, None)
        self._replay_orphans(handle)
        return handle

    def _replay_orphans(self, handle: PromptHandle) -> None:
        for event, size in self._orphans.pop(handle.prompt_id):
            self._deliver(handle, event, size)

    async def submit(
        self,
        graph: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        front: bool = False,
        partial_execution_targets: Sequence[str] | None = None,
        deadline: float | None = _UNSET,
        idle_timeout: float = _UNSET,
        outputs: Sequence[str] = (),
    ) -> PromptHandle:
        """Watch, then submit ``graph`` with the current clientId. Raises PromptRejected.

        ``outputs``: the nodes whose outputs the caller needs. The prompt settles from the
        WebSocket alone only when an ``executed`` frame came for each of them (a server that
        sends none for cached nodes then has its ``/history`` read instead).
        """
        if not self._started:
            await self.start()
        prompt_id = prompt_id or str(uuid.uuid4())
        client_id = self.client.client_id
        handle = self.watch(
            prompt_id,
            client_id=client_id,
            graph=graph,
            deadline=deadline,
            idle_timeout=idle_timeout,
        )
        handle.expected_outputs = tuple(outputs)
        try:
            result = await self.client.submit(
                graph,
                prompt_id=prompt_id,
                client_id=client_id,
                extra_data=extra_data,
                front=front,
                partial_execution_targets=partial_execution_targets,
            )
        except (ServerTimeout, ServerUnreachable, ServerResponseError) as exc:
            # The request may have reached the server before the answer was lost (a timeout,
            # a reset, a proxy's 502/504): the id is ours, so ask the server whether it has it.
            ambiguous = not isinstance(exc, ServerResponseError) or (exc.status or 0) >= 502
            if not (ambiguous and await self._server_knows(prompt_id)):
                self._drop(handle, exc)
                raise
            _log.warning(
                "POST /prompt failed (%s) but the server has %s: following it", exc, prompt_id
            )
            self.mark_submitted(prompt_id)
            return handle
        except ComfyUIError as exc:
            self._drop(handle, exc)
            raise
        except BaseException:
            self._drop(handle, ComfyUIError("submission aborted", where=prompt_id))
            raise
        if result.prompt_id != prompt_id:
            # An older server chose its own id: follow that one instead.
            self._handles.pop(prompt_id, None)
            handle.prompt_id = result.prompt_id
            self._handles[result.prompt_id] = handle
            self._replay_orphans(handle)
        self.mark_submitted(handle.prompt_id, number=result.number, check_now=False)
        if self.report_positions:
            self._spawn(self._report_position(handle))
        return handle

    def _drop(self, handle: PromptHandle, error: ComfyUIError) -> None:
        if self._handles.get(handle.prompt_id) is handle:
            del self._handles[handle.prompt_id]
        self._budgets.pop(handle, None)
        handle.fail("rejected", error)

    async def _server_knows(self, prompt_id: str) -> bool:
        """True if ``prompt_id`` is queued, running or in the history (errors: False)."""
        for _ in range(3):
            try:
                if (await self.client.queue()).contains(prompt_id):
                    return True
                return await self.client.history(prompt_id) is not None
            except ComfyUIError:
                await asyncio.sleep(self.timeouts.poll_interval)
        return False

    def mark_submitted(
        self, prompt_id: str, *, number: float | None = None, check_now: bool = True
    ) -> None:
        """Tell the tracker the server accepted ``prompt_id`` (starts the lost-prompt check).

        With ``check_now`` (the default) the queue and history are looked at on the next tick,
        so a prompt that finished earlier (resume after a restart) is reported at once.
        """
        handle = self._handles.get(prompt_id)
        if handle is not None and not handle.done():
            handle.submitted = True
            handle.number = number
            if handle.state == "watching":
                handle.state = "queued"
            handle.alive()
            if check_now:
                handle.last_checked = float("-inf")
                self._last_poll = 0.0

    async def cancel(
        self, prompt_id: str, *, allow_global_interrupt: bool = False
    ) -> CancelOutcome:
        """Cancel a followed prompt; a deleted pending prompt completes as interrupted."""
        outcome = await self.client.cancel(prompt_id, allow_global_interrupt=allow_global_interrupt)
        handle = self._handles.get(prompt_id)
        if handle is not None and outcome is CancelOutcome.DELETED:
            handle.fail(
                "interrupted",
                PromptInterrupted(
                    f"prompt {prompt_id} was removed from the queue before it ran",
                    where=self.client.address.url,
                    hint="submit it again to render it",
                ),
            )
            self._forget(handle)
        return outcome

    def handle(self, prompt_id: str) -> PromptHandle | None:
        return self._handles.get(prompt_id)

    def on_preview(self, prompt_id: str, listener: PreviewListener | None) -> None:
        """Hand each preview frame of ``prompt_id`` (while it runs) to ``listener``; ``None``
        stops that. Frames come as the server sends them (ComfyUI: one per sampler step when
        started with ``--preview-method`` other than none); bounded by the prompt's budget. A
        listener that raises is dropped, never the frame's connection."""
        if listener is None:
            self._previews.pop(prompt_id, None)
        elif not self._closed:
            self._previews[prompt_id] = listener

    # ------------------------------------------------------------------ WebSocket side
    def _on_gap(self) -> None:
        self._last_poll = 0.0  # poll at once: something may have finished meanwhile
        self._running_prompt = None

    def _dispatch(self, event: Event, size: int) -> None:
        if isinstance(event, ServerStatus):
            self.queue_remaining = event.queue_remaining
            return
        prompt_id = event.prompt_id
        if prompt_id is None and isinstance(event, PreviewImage | ProgressText):
            prompt_id = self._running_prompt
        if prompt_id is None:
            return
        if isinstance(event, ExecutionStarted | NodeExecuting):
            self._running_prompt = prompt_id
        elif isinstance(event, ExecutionDone) and self._running_prompt == prompt_id:
            self._running_prompt = None
        handle = self._handles.get(prompt_id)
        if handle is None:
            if prompt_id in self._recently_done or isinstance(event, PreviewImage | ProgressText):
                return  # late frames of a finished prompt, or bulky frames nobody follows
            self._orphans.add(prompt_id, event, size)
            return
        if isinstance(event, ExecutionStarted) and handle.ws_stream is None:
            handle.ws_stream = self._feed.connections
        self._deliver(handle, event, size)

    def _deliver(self, handle: PromptHandle, event: Event, size: int) -> None:
        """Route ``event`` to ``handle`` as far as its budget allows. A frame whose handling
        fails (odd values a parser let through) is dropped; if it was the prompt's last
        word, its history settles it instead."""
        budget = self._budgets.get(handle)
        admitted = budget.admit(event, size) if budget is not None else event
        if admitted is None:
            if not handle.done():
                handle.alive()  # not kept, but the server is at work on the prompt
            return
        try:
            self._route(handle, admitted)
        except Exception:
            _log.debug("prompt %s: cannot use a %s frame", handle.prompt_id, type(event).__name__)
            _log.debug("the frame's handling failed", exc_info=True)
            if isinstance(event, ExecutionSuccess | ExecutionDone):
                self._start_finalizer(handle)

    def _route(self, handle: PromptHandle, event: Event) -> None:
        if handle.done():
            return
        handle.feed(event)
        if isinstance(event, PreviewImage) and handle.prompt_id in self._previews:
            self._preview(handle, event)
        if isinstance(event, ExecutionError):
            handle.fail("error", execution_failed(self._server, handle.prompt_id, event))
            self._forget(handle)
        elif isinstance(event, ExecutionInterrupted):
            handle.fail("interrupted", interrupted(self._server, handle.prompt_id, event.node_id))
            self._forget(handle)
        elif isinstance(event, ExecutionSuccess) and self._whole_stream(handle):
            # Every ``executed`` frame (cached output nodes included: the server sends those
            # too) arrived on this connection: the outputs are known, /history adds nothing.
            handle.succeed(None, via="websocket")
            self._forget(handle)
        elif isinstance(event, ExecutionSuccess | ExecutionDone):
            self._start_finalizer(handle)

    def _preview(self, handle: PromptHandle, event: PreviewImage) -> None:
        step, steps = handle.sampler_step or (None, None)
        try:
            self._previews[handle.prompt_id](event, step, steps)
        except Exception:
            _log.debug("a preview listener failed; it is dropped", exc_info=True)
            self._previews.pop(handle.prompt_id, None)

    def _forget(self, handle: PromptHandle) -> None:
        super()._forget(handle)
        self._previews.pop(handle.prompt_id, None)  # its listener goes with the prompt

    def _whole_stream(self, handle: PromptHandle) -> bool:
        return (
            handle.ws_stream is not None
            and handle.ws_stream == self._feed.connections
            and self._ws_covers(handle)
            and bool(handle.ws_outputs)
            and all(node in handle.ws_outputs for node in handle.expected_outputs)
        )

    async def _report_position(self, handle: PromptHandle) -> None:
        try:
            queue = await self.client.queue()
        except ComfyUIError:
            return
        position = queue.position(handle.prompt_id)
        if position is not None and position > 0 and handle.state == "queued":
            handle.position = position
            handle.emit(PromptQueued(handle.prompt_id, position, handle.number))
