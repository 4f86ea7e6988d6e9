"""Is the ComfyUI server alive? A ``/system_stats`` probe, a failure counter and a monitor.

Three layers live here:

* pure: :func:`backoff_schedule`, :func:`parse_system_stats`, :func:`classify_probe` and
  :class:`FailureCounter` (no I/O, property-tested);
* I/O: :func:`probe_system_stats` and :func:`fetch_queue_remaining` (one bounded HTTP GET each,
  they never raise for network trouble, they report it);
* orchestration: :class:`HealthMonitor`, which probes in the background, keeps the state and
  calls listeners when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp

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

DEFAULT_PROBE_TIMEOUT = 5.0
"""Seconds one ``/system_stats`` probe may take before it counts as a failure."""


class HealthState(StrEnum):
    """What the monitor believes about the server."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class ProbeOutcome(StrEnum):
    """How one probe went."""

    OK = "ok"  # answered 200 with a valid body, in time
    SLOW = "slow"  # answered correctly, but slower than the slow threshold
    ERROR = "error"  # answered, but with an error status or a body we cannot read
    DOWN = "down"  # no answer at all (refused, reset, timed out)


# ---------------------------------------------------------------------------------------------
# pure core


def backoff_schedule(
    attempt: int, *, base: float = 1.0, factor: float = 2.0, cap: float = 60.0
) -> float:
    """The delay before reconnect ``attempt`` (0-based): ``base * factor**attempt``, capped.

    With the defaults: 1, 2, 4, 8, 16, 32, 60, 60, ... seconds. Negative attempts count as 0.
    """
    if base <= 0 or cap <= 0:
        return 0.0
    if factor < 1.0:
        raise ValueError("backoff factor must be at least 1")
    attempt = max(0, attempt)
    delay = base
    for _ in range(attempt):
        delay *= factor
        if delay >= cap:
            return cap
    return min(delay, cap)


@dataclass(frozen=True)
class DeviceInfo:
    """One entry of ``/system_stats`` ``devices``."""

    name: str
    type: str
    index: int | None
    vram_total: int
    vram_free: int
    torch_vram_total: int
    torch_vram_free: int


@dataclass(frozen=True)
class SystemStats:
    """The parts of ``GET /system_stats`` we use (shape of ComfyUI 0.3.64)."""

    comfyui_version: str | None
    python_version: str | None
    pytorch_version: str | None
    os: str | None
    ram_total: int | None
    ram_free: int | None
    embedded_python: bool | None
    argv: tuple[str, ...]
    devices: tuple[DeviceInfo, ...]

    @property
    def vram_total(self) -> int:
        return sum(d.vram_total for d in self.devices)

    @property
    def vram_free(self) -> int:
        return sum(d.vram_free for d in self.devices)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_system_stats(body: Any, *, where: str | None = None) -> SystemStats:
    """Read a ``/system_stats`` body; raise :class:`ServerResponseError` if it is not one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("system"), Mapping):
        raise ServerResponseError(
            "the answer to /system_stats has no 'system' object, so this is not a ComfyUI",
            where=where,
            hint="Check that the URL points at a ComfyUI server",
        )
    system = body["system"]
    raw_devices = body.get("devices", [])
    devices: list[DeviceInfo] = []
    if isinstance(raw_devices, list):
        for item in raw_devices:
            if not isinstance(item, Mapping):
                continue
            index = item.get("index")
            devices.append(
                DeviceInfo(
                    name=str(item.get("name", "")),
                    type=str(item.get("type", "")),
                    index=index if isinstance(index, int) and not isinstance(index, bool) else None,
                    vram_total=_int(item.get("vram_total")),
                    vram_free=_int(item.get("vram_free")),
                    torch_vram_total=_int(item.get("torch_vram_total")),
                    torch_vram_free=_int(item.get("torch_vram_free")),
                )
            )
    argv = system.get("argv")
    embedded = system.get("embedded_python")
    ram_total = system.get("ram_total")
    ram_free = system.get("ram_free")
    return SystemStats(
        comfyui_version=_opt_str(system.get("comfyui_version")),
        python_version=_opt_str(system.get("python_version")),
        pytorch_version=_opt_str(system.get("pytorch_version")),
        os=_opt_str(system.get("os")),
        ram_total=_int(ram_total) if ram_total is not None else None,
        ram_free=_int(ram_free) if ram_free is not None else None,
        embedded_python=embedded if isinstance(embedded, bool) else None,
        argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
        devices=tuple(devices),
    )


@dataclass(frozen=True)
class ProbeResult:
    """One ``/system_stats`` probe: when, how long, what came back."""

    url: str
    at: datetime
    elapsed: float
    status: int | None = None
    stats: SystemStats | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        """Something answered HTTP at the URL (whatever it said)."""
        return self.status is not None

    @property
    def ok(self) -> bool:
        """A ComfyUI answered: 200 with a valid ``/system_stats`` body."""
        return self.stats is not None


def classify_probe(result: ProbeResult, *, slow_threshold: float) -> ProbeOutcome:
    """Sort a probe into OK / SLOW / ERROR / DOWN."""
    if result.ok:
        return ProbeOutcome.SLOW if result.elapsed > slow_threshold else ProbeOutcome.OK
    if result.answered:
        return ProbeOutcome.ERROR
    return ProbeOutcome.DOWN


@dataclass
class FailureCounter:
    """Counts consecutive failed probes and derives the health state (pure, no clock).

    OK gives HEALTHY and resets the count; SLOW gives DEGRADED and resets it (the server answers);
    ERROR and DOWN add one failure: DEGRADED below ``unhealthy_after`` failures in a row,
    UNHEALTHY from there on. Before any probe the state is UNKNOWN.
    """

    unhealthy_after: int = 3
    consecutive_failures: int = 0
    total_checks: int = 0
    state: HealthState = HealthState.UNKNOWN

    def __post_init__(self) -> None:
        if self.unhealthy_after < 1:
            raise ValueError("unhealthy_after must be at least 1")

    def record(self, outcome: ProbeOutcome) -> HealthState:
        self.total_checks += 1
        if outcome is ProbeOutcome.OK:
            self.consecutive_failures = 0
            self.state = HealthState.HEALTHY
        elif outcome is ProbeOutcome.SLOW:
            self.consecutive_failures = 0
            self.state = HealthState.DEGRADED
        else:
            self.consecutive_failures += 1
            self.state = (
                HealthState.UNHEALTHY
                if self.consecutive_failures >= self.unhealthy_after
                else HealthState.DEGRADED
            )
        return self.state

    def reset(self) -> None:
        self.consecutive_failures = 0
        self.total_checks = 0
        self.state = HealthState.UNKNOWN


# ---------------------------------------------------------------------------------------------
# I/O


def _now() -> datetime:
    return datetime.now(UTC)


async def _get_json(
    session: aiohttp.ClientSession | None,
    url: str,
    timeout: float,  # noqa: ASYNC109
) -> tuple[int, Any]:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    own = session is None
    sess = session if session is not None else aiohttp.ClientSession(timeout=client_timeout)
    try:
        async with sess.get(url, timeout=client_timeout, allow_redirects=False) as resp:
            status = resp.status
            if status != 200:
                await resp.read()
                return status, None
            try:
                return status, await resp.json(content_type=None)
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
        status, body = await _get_json(session, url, timeout)
    except TimeoutError:
        return ProbeResult(url, at, time.perf_counter() - start, error=f"no answer in {timeout} s")
    except (aiohttp.ClientError, OSError) as exc:
        return ProbeResult(
            url, at, time.perf_counter() - start, error=str(exc) or type(exc).__name__
        )
    elapsed = time.perf_counter() - start
    if status != 200:
        return ProbeResult(url, at, elapsed, status=status, error=f"HTTP {status}")
    try:
        stats = parse_system_stats(body, where=url)
    except ServerResponseError as exc:
        return ProbeResult(url, at, elapsed, status=status, error=exc.message)
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
        status, body = await _get_json(session, url, timeout)
    except (TimeoutError, aiohttp.ClientError, OSError):
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
