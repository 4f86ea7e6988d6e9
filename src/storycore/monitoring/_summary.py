"""``storycore metrics``: summarise the last runs from their JSON-lines files.

Pure reading: damaged lines are skipped, a run still being written is read as far as it goes.
Files are read line by line (an overlong line skipped), and only plain files reached without a
link at their end: a planted named pipe or a file of gigabytes costs neither a hang nor memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycore._statefiles import STATE_DIR, iter_lines, open_plain_for_reading
from storycore.monitoring._timeline import PHASES

__all__ = ["METRICS_DIR", "RunSummary", "RunsSummary", "metrics_dir_for", "summarise_runs"]

METRICS_DIR = STATE_DIR / "metrics"


def metrics_dir_for(project_dir: Path) -> Path:
    """Where a project's runs write their metrics."""
    return project_dir / METRICS_DIR


@dataclass
class RunSummary:
    run_id: str
    started: float | None
    ended: float | None
    status: str | None
    panels_ok: int
    panels_failed: int
    panels_per_hour: float | None
    time_split: dict[str, float]
    slowest_panels: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "status": self.status,
            "panels_ok": self.panels_ok,
            "panels_failed": self.panels_failed,
            "panels_per_hour": self.panels_per_hour,
            "time_split": self.time_split,
            "slowest_panels": self.slowest_panels,
            "alerts": self.alerts,
            "path": str(self.path),
        }


@dataclass
class RunsSummary:
    metrics_dir: Path
    runs: list[RunSummary] = field(default_factory=list)

    @property
    def panels(self) -> int:
        return sum(r.panels_ok + r.panels_failed for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics_dir": str(self.metrics_dir),
            "runs": [r.to_dict() for r in self.runs],
            "panels": self.panels,
        }


def _records(path: Path) -> Iterable[dict[str, Any]]:
    handle = open_plain_for_reading(path)
    if handle is None:
        return
    with handle:
        for line in iter_lines(handle):
            try:
                record = json.loads(line.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                yield record


def _summarise(path: Path, slowest: int) -> RunSummary:
    run_id = path.stem.removeprefix("run-")
    started = ended = None
    status: str | None = None
    first_t = last_t = None
    ok = failed = 0
    split = dict.fromkeys((*PHASES, "submit", "download", "server_start"), 0.0)
    panels: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for record in _records(path):
        kind = record.get("type")
        t = record.get("t")
        if isinstance(t, int | float):
            first_t = t if first_t is None else min(first_t, t)
            last_t = t if last_t is None else max(last_t, t)
        if kind == "run_start":
            started = t if isinstance(t, int | float) else None
            run_id = str(record.get("run_id") or run_id)
        elif kind == "run_end":
            ended = t if isinstance(t, int | float) else None
            status = str(record.get("status") or "finished")
        elif kind == "alert":
            alerts.append(
                {k: record.get(k) for k in ("metric", "level", "subject", "message", "t")}
            )
        elif kind == "timing":
            op, seconds = record.get("op"), record.get("seconds")
            if not isinstance(seconds, int | float):
                continue
            if op == "panel":
                if record.get("ok", True):
                    ok += 1
                else:
                    failed += 1
                panels.append(
                    {"panel": record.get("panel"), "seconds": seconds, "ok": record.get("ok", True)}
                )
            elif op in split:
                split[str(op)] += seconds
    begin = started if started is not None else first_t
    end = ended if ended is not None else last_t
    rate: float | None = None
    if begin is not None and end is not None and end > begin and ok:
        rate = ok * 3600.0 / (end - begin)
    panels.sort(key=lambda p: p["seconds"], reverse=True)
    return RunSummary(
        run_id=run_id,
        started=started,
        ended=ended,
        status=status if ended is not None else "unfinished",
        panels_ok=ok,
        panels_failed=failed,
        panels_per_hour=rate,
        time_split={k: v for k, v in split.items() if v},
        slowest_panels=panels[:slowest],
        alerts=alerts,
        path=path,
    )


def _age(path: Path) -> tuple[float, str]:
    try:
        return path.lstat().st_mtime, path.name
    except OSError:  # gone meanwhile
        return 0.0, path.name


def summarise_runs(metrics_dir: Path, *, last: int = 5, slowest: int = 5) -> RunsSummary:
    """The ``last`` runs in ``metrics_dir`` (newest first). Blocking file reads."""
    files = sorted(metrics_dir.glob("run-*.jsonl"), key=_age, reverse=True)
    summary = RunsSummary(metrics_dir=metrics_dir)
    summary.runs = [_summarise(path, slowest) for path in files[:last]]
    return summary
