"""The pure part of the health monitor: states, backoff, the failure counter, ``/system_stats``.

No I/O here; :mod:`storycore.comfyui.health` does the probing and re-exports all of this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from storycore.errors import ServerResponseError

__all__ = [
    "DeviceInfo",
    "FailureCounter",
    "HealthState",
    "ProbeOutcome",
    "ProbeResult",
    "SystemStats",
    "backoff_schedule",
    "classify_probe",
    "parse_system_stats",
]


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
    emulator: bool = False
    """StoryCore's emulator marking its frames as placeholders (``system.storycore_emulator``)."""

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
            "/system_stats answered without a 'system' object: this is not a ComfyUI server "
            "(check the URL and its path prefix)",
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
        emulator=system.get("storycore_emulator") is True,
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
