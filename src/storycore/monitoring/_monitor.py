"""The Performance Monitor: timings per operation and per panel, outcomes, queue depth and
resource samples, with alerts when thresholds are crossed, written as JSON lines per run.

Recording is in memory and cheap; :meth:`PerformanceMonitor.aflush` appends the new records to
``metrics_dir/run-<id>.jsonl`` from a worker thread (the sampler does it every interval). The
file is opened only as a plain file, never through a link, in a folder that stays inside
``inside`` (the project; :func:`storycore._statefiles.open_state_file`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storycore._statefiles import open_state_file
from storycore.monitoring._alerts import Alert, AlertLevel, Thresholds, evaluate
from storycore.monitoring._resources import ResourceSample
from storycore.monitoring._timeline import PHASES, PromptTimeline

__all__ = ["OPERATIONS", "OperationStats", "PerformanceMonitor", "Timing", "new_run_id"]

#: Operations with a threshold: op -> (threshold metric, factor from seconds to its unit).
_TIMED_METRICS = {
    "server_start": ("service_start", 1.0),
    "health_probe": ("health_probe", 1000.0),
    "panel": ("workflow", 1.0),
}
OPERATIONS = ("server_start", "health_probe", "submit", "download", "panel", *PHASES)
_LEVEL_ORDER = {AlertLevel.OK: 0, AlertLevel.WARNING: 1, AlertLevel.CRITICAL: 2}


def new_run_id() -> str:
    """A sortable, unique run id: UTC time, process id and a random suffix."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Timing:
    op: str
    seconds: float
    t: float
    panel: str | None = None
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "timing",
            "op": self.op,
            "seconds": self.seconds,
            "t": self.t,
            "panel": self.panel,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class OperationStats:
    count: int
    total: float
    mean: float
    minimum: float
    maximum: float
    p50: float
    p95: float


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


class PerformanceMonitor:
    """Collects one run's metrics. Use from one event loop; flushing may run in a thread."""

    def __init__(
        self,
        *,
        thresholds: Thresholds | None = None,
        metrics_dir: Path | None = None,
        run_id: str | None = None,
        keep_samples: int = 720,
        keep_timings: int = 50_000,
        inside: Path | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.run_id = run_id or new_run_id()
        self.path = metrics_dir / f"run-{self.run_id}.jsonl" if metrics_dir is not None else None
        #: the folder the metrics must stay in: the project (``inside``), else ``metrics_dir``
        self.root = inside if inside is not None else metrics_dir
        self.timings: deque[Timing] = deque(maxlen=keep_timings)
        self.samples: deque[ResourceSample] = deque(maxlen=keep_samples)
        self.alerts: deque[Alert] = deque(maxlen=5000)
        self.panels_ok = 0
        self.panels_failed = 0
        self.outcomes_ok = 0
        self.outcomes_failed = 0
        self.queue_depth: int | None = None
        self.started = time.time()
        self._levels: dict[tuple[str, str | None], AlertLevel] = {}
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write({"type": "run_start", "t": self.started, "run_id": self.run_id})

    # -- recording ---------------------------------------------------------------------------
    def _write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self._lock:
                self._pending.append(record)

    def _raise(self, alert: Alert | None) -> list[Alert]:
        if alert is None:
            return []
        self.alerts.append(alert)
        self._write({"type": "alert", **alert.to_dict()})
        return [alert]

    def _gauge(self, metric: str, value: float, subject: str | None = None) -> list[Alert]:
        """Alert when a gauge climbs to a worse level (not on every sample while it stays)."""
        alert = evaluate(metric, value, self.thresholds, time.time(), subject)
        level = alert.level if alert else AlertLevel.OK
        previous = self._levels.get((metric, subject), AlertLevel.OK)
        self._levels[(metric, subject)] = level
        if alert is not None and _LEVEL_ORDER[level] > _LEVEL_ORDER[previous]:
            return self._raise(alert)
        return []

    def record_timing(
        self, op: str, seconds: float, *, panel: str | None = None, ok: bool = True
    ) -> list[Alert]:
        """One timed operation; returns the alerts it raised."""
        timing = Timing(op, float(seconds), time.time(), panel, ok)
        self.timings.append(timing)
        self._write(timing.to_dict())
        metric = _TIMED_METRICS.get(op)
        if metric is None:
            return []
        name, factor = metric
        return self._raise(evaluate(name, seconds * factor, self.thresholds, timing.t, panel))

    @contextmanager
    def measure(self, op: str, *, panel: str | None = None) -> Iterator[None]:
        """Time the ``with`` body (failed when it raises)."""
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.record_timing(op, time.perf_counter() - start, panel=panel, ok=ok)

    def record_outcome(self, ok: bool) -> list[Alert]:
        """One request's outcome, for the error rate."""
        if ok:
            self.outcomes_ok += 1
        else:
            self.outcomes_failed += 1
        rate = self.error_rate
        total = self.outcomes_ok + self.outcomes_failed
        if rate is None or total < self.thresholds.error_rate_min_events:
            return []
        return self._gauge("error_rate", rate)

    def record_panel(
        self,
        panel: str,
        seconds: float,
        *,
        ok: bool = True,
        phases: Mapping[str, float] | None = None,
    ) -> list[Alert]:
        """A finished panel: its wall time, its phases (see :data:`PHASES`), its outcome."""
        alerts: list[Alert] = []
        for phase, spent in (phases or {}).items():
            if phase in PHASES:
                alerts += self.record_timing(phase, spent, panel=panel)
        alerts += self.record_timing("panel", seconds, panel=panel, ok=ok)
        if ok:
            self.panels_ok += 1
        else:
            self.panels_failed += 1
        return alerts + self.record_outcome(ok)

    def record_timeline(self, panel: str, timeline: PromptTimeline) -> list[Alert]:
        phases = timeline.phases
        total = phases.pop("total", sum(phases.values()))
        return self.record_panel(panel, total, ok=timeline.outcome == "success", phases=phases)

    def record_queue_depth(self, depth: int) -> list[Alert]:
        self.queue_depth = depth
        self._write({"type": "queue", "t": time.time(), "depth": depth})
        return self._gauge("queue_depth", float(depth))

    def record_sample(self, sample: ResourceSample) -> list[Alert]:
        self.samples.append(sample)
        self._write({"type": "sample", **sample.to_dict()})
        alerts = self._gauge("cpu", sample.cpu_percent) + self._gauge(
            "memory", sample.memory_percent
        )
        if sample.disk_percent is not None:
            alerts += self._gauge("disk", sample.disk_percent)
        for gpu in sample.gpus:
            if gpu.memory_percent is not None:
                alerts += self._gauge("gpu_memory", gpu.memory_percent, f"GPU {gpu.index}")
        return alerts

    # -- reading -----------------------------------------------------------------------------
    @property
    def error_rate(self) -> float | None:
        total = self.outcomes_ok + self.outcomes_failed
        return 100.0 * self.outcomes_failed / total if total else None

    def stats(self) -> dict[str, OperationStats]:
        by_op: dict[str, list[float]] = {}
        for timing in self.timings:
            by_op.setdefault(timing.op, []).append(timing.seconds)
        out: dict[str, OperationStats] = {}
        for op, values in by_op.items():
            ordered = sorted(values)
            out[op] = OperationStats(
                count=len(values),
                total=sum(values),
                mean=sum(values) / len(values),
                minimum=ordered[0],
                maximum=ordered[-1],
                p50=_quantile(ordered, 0.5),
                p95=_quantile(ordered, 0.95),
            )
        return out

    # -- writing -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Append the records not yet written (blocking; see :meth:`aflush`)."""
        if self.path is None:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pending).encode()
        assert self.root is not None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        fd = open_state_file(self.root, self.path, flags, what="metrics file")
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    async def aflush(self) -> None:
        await asyncio.to_thread(self.flush)

    def close(self, status: str = "finished") -> None:
        """Mark the run's end and write everything (blocking)."""
        self._write({"type": "run_end", "t": time.time(), "run_id": self.run_id, "status": status})
        self.flush()

    async def aclose(self, status: str = "finished") -> None:
        await asyncio.to_thread(self.close, status)
