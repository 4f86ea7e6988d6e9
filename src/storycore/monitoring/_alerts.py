"""Thresholds and alerts. Pure: no I/O, no clock beyond the timestamp passed in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Alert", "AlertLevel", "Threshold", "Thresholds", "evaluate"]


class AlertLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Threshold:
    """``warning`` and ``critical`` bounds of one metric, in ``unit``."""

    warning: float
    critical: float
    unit: str

    def level(self, value: float) -> AlertLevel:
        if value >= self.critical:
            return AlertLevel.CRITICAL
        if value >= self.warning:
            return AlertLevel.WARNING
        return AlertLevel.OK


@dataclass(frozen=True)
class Thresholds:
    """The defaults of issue 8: service start 30/60 s, workflow 120/300 s, health probe
    5000/10000 ms, memory 80/95 %, CPU 85/95 %, error rate 5/15 %, queue depth 10/25.

    ``error_rate_min_events``: no error-rate alert before this many outcomes (one failure in
    three is not a trend)."""

    service_start: Threshold = Threshold(30.0, 60.0, "s")
    workflow: Threshold = Threshold(120.0, 300.0, "s")
    health_probe: Threshold = Threshold(5000.0, 10000.0, "ms")
    memory: Threshold = Threshold(80.0, 95.0, "%")
    cpu: Threshold = Threshold(85.0, 95.0, "%")
    error_rate: Threshold = Threshold(5.0, 15.0, "%")
    queue_depth: Threshold = Threshold(10.0, 25.0, "")
    gpu_memory: Threshold = Threshold(90.0, 98.0, "%")
    disk: Threshold = Threshold(90.0, 97.0, "%")
    error_rate_min_events: int = 10

    def for_metric(self, metric: str) -> Threshold | None:
        value = getattr(self, metric, None)
        return value if isinstance(value, Threshold) else None


@dataclass(frozen=True)
class Alert:
    """A metric crossed a threshold. ``subject`` names the panel or GPU when there is one."""

    metric: str
    level: AlertLevel
    value: float
    threshold: float
    unit: str
    t: float
    subject: str | None = None

    @property
    def message(self) -> str:
        about = f" ({self.subject})" if self.subject else ""
        name = self.metric.replace("_", " ")
        return (
            f"{name}{about} at {self.value:.1f}{self.unit}, "
            f"over the {self.level.value} threshold of {self.threshold:g}{self.unit}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "level": self.level.value,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "t": self.t,
            "subject": self.subject,
            "message": self.message,
        }


def evaluate(
    metric: str, value: float, thresholds: Thresholds, t: float, subject: str | None = None
) -> Alert | None:
    """The alert ``value`` raises for ``metric``, or ``None`` under the warning bound."""
    threshold = thresholds.for_metric(metric)
    if threshold is None:
        return None
    level = threshold.level(value)
    if level is AlertLevel.OK:
        return None
    bound = threshold.critical if level is AlertLevel.CRITICAL else threshold.warning
    return Alert(metric, level, float(value), bound, threshold.unit, t, subject)
