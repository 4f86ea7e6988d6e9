"""What the engine reports while it renders: small frozen events, one per thing that happened.

The CLI turns them into progress bars, or into one JSON line each with ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "BackendChanged",
    "EngineEvent",
    "EventSink",
    "Notice",
    "PanelDone",
    "PanelFailed",
    "PanelPlanned",
    "PanelPreview",
    "PanelProgress",
    "PanelSkipped",
    "PanelSubmitted",
    "RunStarted",
    "event_to_dict",
]


@dataclass(frozen=True)
class RunStarted:
    total: int
    to_render: int
    backends: tuple[str, ...]
    mock: bool
    project: str


@dataclass(frozen=True)
class Notice:
    """Something the user should read (a fallback, an adopted server, a resumed prompt)."""

    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class BackendChanged:
    url: str
    state: Literal["healthy", "unhealthy", "down", "mock"]
    detail: str = ""


@dataclass(frozen=True)
class PanelSkipped:
    shot_id: str
    reason: str
    path: str | None = None


@dataclass(frozen=True)
class PanelSubmitted:
    shot_id: str
    backend: str
    prompt_id: str
    attempt: int = 1


@dataclass(frozen=True)
class PanelProgress:
    """Where a running panel is. ``step``/``steps`` are the sampler's own progress (``progress``
    value/max) when a node reports it; ``node_class`` names the node running now."""

    shot_id: str
    fraction: float
    step: int | None = None
    steps: int | None = None
    node: str | None = None
    node_class: str | None = None


@dataclass(frozen=True)
class PanelPreview:
    """The latest preview of a running panel was written to ``path`` (a JPEG under
    ``.storycore/previews/``, replaced at most twice a second, removed when the panel lands or
    fails). ``step``/``steps``: the sampler step it shows, when the server said;
    ``count``: how many previews of this panel were written so far."""

    shot_id: str
    path: str
    step: int | None = None
    steps: int | None = None
    width: int = 0
    height: int = 0
    count: int = 1


@dataclass(frozen=True)
class PanelDone:
    """A panel landed in the project. ``seconds`` is the whole trip (upload to written);
    ``execution_s`` the server's own time running the graph, ``queued_s`` the wait in its
    queue (both ``None`` when the server did not tell, e.g. a resumed prompt)."""

    shot_id: str
    path: str
    seconds: float
    placeholder: bool
    backend: str
    prompt_id: str
    resumed: bool = False
    execution_s: float | None = None
    queued_s: float | None = None


@dataclass(frozen=True)
class PanelPlanned:
    """``--dry-run``: what would be submitted for a panel, or why it would be skipped."""

    shot_id: str
    action: Literal["render", "skip"]
    reason: str
    positive: str
    negative: str
    seed: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    checkpoint: str
    template: str | None = None


@dataclass(frozen=True)
class PanelFailed:
    shot_id: str
    error: str
    where: str | None = None
    hint: str | None = None
    will_retry: bool = False
    details: dict[str, Any] = field(default_factory=dict)


EngineEvent = (
    RunStarted
    | Notice
    | BackendChanged
    | PanelSkipped
    | PanelSubmitted
    | PanelProgress
    | PanelPreview
    | PanelDone
    | PanelFailed
    | PanelPlanned
)
EventSink = Callable[[EngineEvent], None]


def event_to_dict(event: EngineEvent) -> dict[str, Any]:
    """``{"event": "panel_done", ...fields}`` for JSON-lines output."""
    name = "".join("_" + c.lower() if c.isupper() else c for c in type(event).__name__)
    return {"event": name.lstrip("_"), **asdict(event)}
