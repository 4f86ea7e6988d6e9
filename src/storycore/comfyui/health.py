"""Is the ComfyUI server alive? A ``/system_stats`` probe, a failure counter and a monitor.

Three layers live here:

* pure (in :mod:`storycore.comfyui._health_core`, re-exported here): :func:`backoff_schedule`,
  :func:`parse_system_stats`, :func:`classify_probe` and :class:`FailureCounter`;
* I/O: :func:`probe_system_stats` and :func:`fetch_queue_remaining` (one bounded HTTP GET each,
  they never raise for network trouble, they report it);
* orchestration: :class:`HealthMonitor`, which probes in the background, keeps the state and
  calls listeners when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from storycore.comfyui._health_core import (
    DeviceInfo,
    FailureCounter,
    HealthState,
    ProbeOutcome,
    ProbeResult,
    SystemStats,
    backoff_schedule,
    classify_probe,
    parse_system_stats,
)
from storycore.comfyui._limits import (
    ClientLimits,
    JsonTooComplex,
    decode_json,
    describe_complex,
    read_limited,
)
from storycore.comfyui._translate import status_meaning, translate_exception
from storycore.errors import ServerResponseError, ServerTimeout

__all__ = [
    "DEFAULT_PROBE_TIMEOUT",
    "DeviceInfo",
    "FailureCounter",
    "HealthMonitor",
    "HealthState",
    "HealthSummary",
    "ProbeOutcome",
    "ProbeResult",
    "StateListener",
    "SystemStats",
    "backoff_schedule",
    "classify_probe",
    "fetch_queue_remaining",
    "parse_system_stats",
    "probe_system_stats",
]

_log = logging.getLogger("storycore.comfyui.health")

DEFAULT_PROBE_TIMEOUT = 5.0
"""Seconds one ``/system_stats`` probe may take in all (its answer read whole) before it counts
as a failure."""

_LIMITS = ClientLimits()  # probes read small answers: the default limits always fit


# ---------------------------------------------------------------------------------------------
# I/O


def _now() -> datetime:
    return datetime.now(UTC)


async def _get_json(
    session: aiohttp.ClientSession | None,
    url: str,
    timeout: float,  # noqa: ASYNC109
    route: str,
) -> tuple[int, Any]:
    """``GET url`` within ``timeout`` seconds in all, its body read within the route's size
    limit; the JSON is ``None`` when the body is not JSON. Raises ``ServerResponseError`` for
    an answer too large, too deep or too big to decode."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    own = session is None
    sess = session if session is not None else aiohttp.ClientSession(timeout=client_timeout)
    limit, setting = _LIMITS.for_route(route)
    try:
        async with sess.get(url, timeout=client_timeout, allow_redirects=False) as resp:
            status = resp.status
            body = await read_limited(
                resp, limit=limit, setting=setting, where=url, action=f"GET {route}"
            )
            if status != 200:
                return status, None
            try:
                return status, decode_json(body, limit=limit)
            except JsonTooComplex as problem:
                raise describe_complex(route, problem, url) from None
            except ValueError:
                return status, None
    finally:
        if own:
            await sess.close()


async def probe_system_stats(
    base_url: str,
    *,
    timeout: float = DEFAULT_PROBE_TIMEOUT,  # noqa: ASYNC109
    session: aiohttp.ClientSession | None = None,
) -> ProbeResult:
    """GET ``{base_url}/system_stats`` once, within ``timeout`` seconds. Never raises for I/O."""
    url = base_url.rstrip("/") + "/system_stats"
    at = _now()
    start = time.perf_counter()
    try:
        status, body = await _get_json(session, url, timeout, "/system_stats")
    except ServerResponseError as exc:
        _log.debug("probe of %s failed: %s", url, exc.message)
        return ProbeResult(url, at, time.perf_counter() - start, status=200, error=exc.message)
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
        _log.debug("probe of %s failed: %s", url, error)
        return ProbeResult(url, at, time.perf_counter() - start, error=error)
    except (aiohttp.ClientError, OSError) as exc:
        translated = translate_exception(exc, url, action="GET /system_stats")
        error = translated.message if translated is not None else "cannot connect"
        _log.debug("probe of %s failed: %s", url, error)
        return ProbeResult(url, at, time.perf_counter() - start, error=error)
    elapsed = time.perf_counter() - start
    if status != 200:
        error = f"HTTP {status} from /system_stats: {status_meaning(status, '/system_stats')}"
        _log.debug("probe of %s failed: %s", url, error)
        return ProbeResult(url, at, elapsed, status=status, error=error)
    try:
        stats = parse_system_stats(body, where=url)
    except ServerResponseError as exc:
        _log.debug("probe of %s failed: %s", url, exc.message)
        return ProbeResult(url, at, elapsed, status=status, error=exc.message)
    _log.debug("probe of %s: ComfyUI %s in %.0f ms", url, stats.comfyui_version, elapsed * 1e3)
    return ProbeResult(url, at, elapsed, status=status, stats=stats)


async def fetch_queue_remaining(
    base_url: str,
    *,
    timeout: float = DEFAULT_PROBE_TIMEOUT,  # noqa: ASYNC109
    session: aiohttp.ClientSession | None = None,
) -> int | None:
    """``GET /prompt`` -> ``exec_info.queue_remaining``, or None when it cannot be read."""
    url = base_url.rstrip("/") + "/prompt"
    try:
        status, body = await _get_json(session, url, timeout, "/prompt")
    except (TimeoutError, aiohttp.ClientError, OSError, ServerResponseError):
        return None
    if status != 200 or not isinstance(body, Mapping):
        return None
    info = body.get("exec_info")
    if not isinstance(info, Mapping):
        return None
    value = info.get("queue_remaining")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------------
# orchestration


@dataclass(frozen=True)
class HealthSummary:
    """What the monitor knows, for status output."""

    url: str
    state: HealthState
    consecutive_failures: int
    last_check: datetime | None
    response_time_ms: float | None
    last_error: str | None
    comfyui_version: str | None
    devices: tuple[DeviceInfo, ...] = field(default_factory=tuple)
    vram_total: int | None = None
    vram_free: int | None = None
    queue_remaining: int | None = None


StateListener = Callable[[HealthState, HealthState, ProbeResult], Awaitable[None] | None]
"""``listener(old, new, probe)``; may be a plain function or a coroutine function."""


class HealthMonitor:
    """Probes ``/system_stats`` and keeps a health state, once or in the background.

    In the background loop the next probe comes ``interval`` seconds after a healthy one, and
    after failures the reconnect delay follows :func:`backoff_schedule` (1 s doubling, at most
    ``max_delay``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        interval: float = 5.0,
        timeout: float = DEFAULT_PROBE_TIMEOUT,
        slow_threshold: float = 2.0,
        unhealthy_after: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        fetch_queue: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.slow_threshold = slow_threshold
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.fetch_queue = fetch_queue
        self._counter = FailureCounter(unhealthy_after=unhealthy_after)
        self._listeners: list[StateListener] = []
        self._last: ProbeResult | None = None
        self._last_stats: SystemStats | None = None
        self._queue: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> HealthState:
        return self._counter.state

    @property
    def consecutive_failures(self) -> int:
        return self._counter.consecutive_failures

    @property
    def last_result(self) -> ProbeResult | None:
        return self._last

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def next_delay(self) -> float:
        """Seconds until the next background probe, given the failures so far."""
        failures = self._counter.consecutive_failures
        if failures == 0:
            return self.interval
        return backoff_schedule(failures - 1, base=self.base_delay, cap=self.max_delay)

    def summary(self) -> HealthSummary:
        stats = self._last_stats
        last = self._last
        return HealthSummary(
            url=self.base_url,
            state=self.state,
            consecutive_failures=self.consecutive_failures,
            last_check=last.at if last else None,
            response_time_ms=round(last.elapsed * 1000, 2) if last else None,
            last_error=last.error if last else None,
            comfyui_version=stats.comfyui_version if stats else None,
            devices=stats.devices if stats else (),
            vram_total=stats.vram_total if stats else None,
            vram_free=stats.vram_free if stats else None,
            queue_remaining=self._queue,
        )

    # -- probing ---------------------------------------------------------------------------
    async def check(self) -> ProbeResult:
        """Probe once, update the state and tell the listeners if it changed."""
        result = await probe_system_stats(
            self.base_url, timeout=self.timeout, session=self._session
        )
        if result.stats is not None:
            self._last_stats = result.stats
            if self.fetch_queue:
                self._queue = await fetch_queue_remaining(
                    self.base_url, timeout=self.timeout, session=self._session
                )
        old = self._counter.state
        new = self._counter.record(classify_probe(result, slow_threshold=self.slow_threshold))
        self._last = result
        if new is not old:
            await self._notify(old, new, result)
        return result

    async def _notify(self, old: HealthState, new: HealthState, result: ProbeResult) -> None:
        for listener in list(self._listeners):
            outcome = listener(old, new, result)
            if inspect.isawaitable(outcome):
                await outcome

    async def wait_until_ready(self, timeout: float, *, poll: float = 0.25) -> SystemStats:  # noqa: ASYNC109
        """Probe until ``/system_stats`` answers; raise :class:`ServerTimeout` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            result = await probe_system_stats(
                self.base_url,
                timeout=max(0.05, min(self.timeout, remaining)),
                session=self._session,
            )
            if result.stats is not None:
                old = self._counter.state
                new = self._counter.record(
                    classify_probe(result, slow_threshold=self.slow_threshold)
                )
                self._last, self._last_stats = result, result.stats
                if new is not old:
                    await self._notify(old, new, result)
                return result.stats
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerTimeout(
                    f"ComfyUI did not answer /system_stats within {timeout:g} s"
                    + (f" (last error: {result.error})" if result.error else ""),
                    where=result.url,
                    hint="Check that the server is started and the URL is right",
                )
            await asyncio.sleep(min(poll, remaining))

    # -- background ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background loop (needs a running event loop)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        self._session = aiohttp.ClientSession()
        while True:
            await self.check()
            await asyncio.sleep(self.next_delay())

    async def __aenter__(self) -> HealthMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
