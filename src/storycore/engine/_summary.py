"""The end-of-run report: what was rendered, skipped, failed, and the exit code it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from storycore.errors import EXIT_INTERRUPTED, EXIT_PLACEHOLDERS, RenderError

__all__ = ["PanelOutcome", "RenderSummary"]

Status = Literal["rendered", "placeholder", "skipped", "failed", "stopped", "planned"]


@dataclass
class PanelOutcome:
    shot_id: str
    status: Status
    path: str | None = None
    seconds: float | None = None
    error: str | None = None
    backend: str | None = None
    prompt_id: str | None = None
    placeholder: bool = False
    execution_s: float | None = None  # the server's time running the graph
    queued_s: float | None = None  # the wait in the server's queue
    reason: str | None = None  # why a skipped panel was not rendered, when not "unchanged"


@dataclass
class RenderSummary:
    project: Path
    outcomes: list[PanelOutcome]
    elapsed: float
    mock: bool
    backends: list[str]
    stopped: bool = False
    dry_run: bool = False
    render_seconds: float | None = None  # wall time from the first submission to the last panel
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {
            status: sum(1 for o in self.outcomes if o.status == status)
            for status in ("rendered", "placeholder", "skipped", "failed", "stopped", "planned")
        }

    @property
    def failed(self) -> list[PanelOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def mean_panel_seconds(self) -> float | None:
        """The mean of each panel's own trip (latency, not throughput)."""
        times = [o.seconds for o in self.outcomes if o.seconds is not None]
        return mean(times) if times else None

    @property
    def finished(self) -> int:
        """Panels that landed in the project in this run (rendered or placeholders)."""
        return self.counts["rendered"] + self.counts["placeholder"]

    @property
    def seconds_per_panel(self) -> float | None:
        """Throughput as wall time per finished panel (pipelining and parallel servers count)."""
        if not self.finished or not self.render_seconds:
            return None
        return self.render_seconds / self.finished

    @property
    def panels_per_hour(self) -> float | None:
        per_panel = self.seconds_per_panel
        return 3600.0 / per_panel if per_panel else None

    @property
    def placeholder_panels(self) -> int:
        """Panels whose image in the board is a placeholder, from this run or an earlier one."""
        return sum(1 for o in self.outcomes if o.placeholder)

    @property
    def exit_code(self) -> int:
        """0 ok; 130 stopped by the user; 8 some panels failed (or were left undone without a
        stop: never a silent success); 9 the board holds placeholders."""
        if self.stopped and self.counts["stopped"]:
            return EXIT_INTERRUPTED
        if self.counts["failed"] or self.counts["stopped"]:
            return RenderError.exit_code
        if any(o.placeholder for o in self.outcomes):
            return EXIT_PLACEHOLDERS
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": str(self.project),
            "elapsed_s": round(self.elapsed, 3),
            "mean_panel_s": None
            if self.mean_panel_seconds is None
            else round(self.mean_panel_seconds, 3),
            "render_s": None if self.render_seconds is None else round(self.render_seconds, 3),
            "seconds_per_panel": None
            if self.seconds_per_panel is None
            else round(self.seconds_per_panel, 3),
            "panels_per_hour": None
            if self.panels_per_hour is None
            else round(self.panels_per_hour, 1),
            "placeholder_panels": self.placeholder_panels,
            "mock": self.mock,
            "backends": self.backends,
            "stopped": self.stopped,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "exit_code": self.exit_code,
            "panels": [o.__dict__ for o in self.outcomes],
        }
