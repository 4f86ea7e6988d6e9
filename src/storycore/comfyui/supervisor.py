"""Keeps a managed ComfyUI alive while the engine renders.

::

    async with Supervisor(manager, on_restart=resubmit):
        ...  # render; if the server crashes it is restarted and ``resubmit(event)`` is awaited

The supervisor watches two things every ``interval`` seconds: the process (pid + create time)
and ``/system_stats``. A process that exited, or ``failures_before_restart`` failed probes in a
row, is a crash: the server is stopped if it still runs (a hang), then started again after a
backoff delay (1 s doubling, capped), at most ``max_restarts`` times. After each successful
restart the async ``on_restart`` callback is awaited so the engine can resubmit what was lost.
When the restarts are used up, ``error`` holds a :class:`StartupFailed` and ``on_give_up`` (if
given) is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storycore.comfyui.health import backoff_schedule, probe_system_stats
from storycore.comfyui.manager import ComfyUIManager, StartResult
from storycore.errors import ManagerError, StartupFailed

__all__ = ["GiveUpCallback", "RestartCallback", "RestartEvent", "Supervisor"]


@dataclass(frozen=True)
class RestartEvent:
    """One automatic restart: why, which attempt, and the new server."""

    attempt: int
    reason: str
    delay: float
    url: str
    pid: int | None
    at: float
    result: StartResult


RestartCallback = Callable[[RestartEvent], Awaitable[None]]
GiveUpCallback = Callable[[ManagerError], Awaitable[None]]


class Supervisor:
    """Restarts a crashed managed server with backoff, a bounded number of times."""

    def __init__(
        self,
        manager: ComfyUIManager,
        *,
        on_restart: RestartCallback,
        on_give_up: GiveUpCallback | None = None,
        max_restarts: int | None = None,
        interval: float | None = None,
        failures_before_restart: int = 3,
        probe_timeout: float = 5.0,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        self.manager = manager
        self.on_restart = on_restart
        self.on_give_up = on_give_up
        opts = manager.options
        self.max_restarts = opts.max_restarts if max_restarts is None else max_restarts
        self.interval = opts.health_interval if interval is None else interval
        self.failures_before_restart = max(1, failures_before_restart)
        self.probe_timeout = probe_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.restarts = 0
        self.events: list[RestartEvent] = []
        self.error: ManagerError | None = None
        self._failures = 0
        self._managed = True
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def gave_up(self) -> bool:
        return self.error is not None

    async def start(self) -> None:
        """Begin watching; the server must have been started by StoryCore."""
        if self.running:
            return
        if not self.manager.is_alive():
            raise ManagerError(
                "supervision needs a ComfyUI started by StoryCore, and none runs",
                where=str(self.manager.pidfile_path),
                hint="Start it with 'storycore comfyui start' (or let the engine start it)",
            )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="comfyui-supervisor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            reason = await self._check()
            if reason is not None and not await self._recover(reason):
                return

    async def _check(self) -> str | None:
        """A reason to restart, or None when all is well."""
        if self._managed and not self.manager.is_alive():
            return "the ComfyUI process exited"
        probe = await probe_system_stats(self.manager.url, timeout=self.probe_timeout)
        if probe.ok:
            self._failures = 0
            return None
        self._failures += 1
        if self._failures >= self.failures_before_restart:
            return f"{self._failures} health probes failed in a row (last: {probe.error})"
        return None

    async def _recover(self, reason: str) -> bool:
        while True:
            if self.restarts >= self.max_restarts:
                self.error = StartupFailed(
                    f"ComfyUI crashed ({reason}) and {self.restarts} automatic restarts "
                    "are used up",
                    where=str(self.manager.log_path),
                    hint="Read the log to see why it keeps failing",
                )
                if self.on_give_up is not None:
                    await self.on_give_up(self.error)
                return False
            delay = backoff_schedule(self.restarts, base=self.base_delay, cap=self.max_delay)
            self.restarts += 1
            await asyncio.sleep(delay)
            try:
                if self.manager.is_alive():
                    await self.manager.stop()  # a hang: the process runs but does not answer
                result = await self.manager.start()
            except ManagerError as exc:
                reason = f"restart {self.restarts} failed: {exc.message}"
                continue
            self._failures = 0
            self._managed = result.managed
            event = RestartEvent(
                attempt=self.restarts,
                reason=reason,
                delay=delay,
                url=result.url,
                pid=result.pid,
                at=time.time(),
                result=result,
            )
            self.events.append(event)
            await self.on_restart(event)
            return True
