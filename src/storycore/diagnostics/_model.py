"""The vocabulary of a diagnosis: category, severity, strategy, and the :class:`Diagnosis` itself.

Pure data, no I/O. A :class:`Diagnosis` is what the Error Handler says about one failure: what
kind of failure it is, how bad, what the user should do, and what the engine should do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Category",
    "Diagnosis",
    "DiagnosticContext",
    "Severity",
    "Strategy",
]


class Category(StrEnum):
    """Where a failure comes from."""

    NETWORK = "network"
    SERVICE = "service"
    CONFIGURATION = "configuration"
    WORKFLOW = "workflow"
    RESOURCE = "resource"
    SYSTEM = "system"


class Severity(StrEnum):
    """How much of the run a failure costs."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Strategy(StrEnum):
    """What the engine does about a failure.

    ``RETRY``: try the same call again after a bounded exponential backoff.
    ``FAILOVER``: send the work to another backend (another ComfyUI server).
    ``POLL``: stop relying on the WebSocket; poll ``/history`` and ``/queue`` instead.
    ``MOCK``: finish the board with placeholder frames (exit 9).
    ``ABORT``: stop and tell the user what to fix.
    """

    RETRY = "retry"
    FAILOVER = "failover"
    POLL = "poll"
    MOCK = "mock"
    ABORT = "abort"


@dataclass(frozen=True)
class DiagnosticContext:
    """What the caller knows that makes a diagnosis sharper.

    ``installed_models`` maps a ComfyUI model folder (``checkpoints``, ``loras``...) to the file
    names it holds, so a missing-model suggestion can name what *is* there. ``can_failover`` and
    ``allow_mock`` say which fallbacks the caller can actually apply; a strategy the caller cannot
    apply is never chosen. ``port_holders`` maps a port to ``(pid, process name)``;
    ``known_node_classes`` (from ``/object_info``) lets a misspelt class name get a "did you mean".
    """

    installed_models: Mapping[str, Sequence[str]] = field(default_factory=dict)
    can_failover: bool = False
    allow_mock: bool = False
    port_holders: Mapping[int, tuple[int, str]] = field(default_factory=dict)
    known_node_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Diagnosis:
    """One classified failure.

    ``code`` is a stable short name (``out_of_memory``, ``missing_model``,
    ``missing_custom_node``, ``bad_input``, ``unreachable``...). ``strategy`` is what to do now;
    ``fallback`` is what to do once ``RETRY`` has used up ``retry_limit`` retries.
    """

    category: Category
    severity: Severity
    strategy: Strategy
    code: str
    message: str
    suggestion: str
    fallback: Strategy = Strategy.ABORT
    retry_limit: int = 0
    where: str | None = None
    node_id: str | None = None
    node_type: str | None = None
    error_type: str | None = None
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (one line of the diagnostic history)."""
        return {
            "timestamp": self.timestamp,
            "category": self.category.value,
            "severity": self.severity.value,
            "strategy": self.strategy.value,
            "fallback": self.fallback.value,
            "retry_limit": self.retry_limit,
            "code": self.code,
            "message": self.message,
            "suggestion": self.suggestion,
            "where": self.where,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "error_type": self.error_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        """Read back a line written by :meth:`to_dict`."""
        return cls(
            category=Category(data["category"]),
            severity=Severity(data["severity"]),
            strategy=Strategy(data["strategy"]),
            fallback=Strategy(data.get("fallback", "abort")),
            retry_limit=int(data.get("retry_limit", 0)),
            code=str(data["code"]),
            message=str(data["message"]),
            suggestion=str(data["suggestion"]),
            where=data.get("where"),
            node_id=data.get("node_id"),
            node_type=data.get("node_type"),
            error_type=data.get("error_type"),
            timestamp=float(data.get("timestamp", 0.0)),
        )
