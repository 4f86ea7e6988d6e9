"""The Image Engine: a whole board across one or many ComfyUI servers, resumable."""

from storycore.engine._engine import ImageEngine, RenderRequest
from storycore.engine._events import (
    BackendChanged,
    EngineEvent,
    Notice,
    PanelDone,
    PanelFailed,
    PanelProgress,
    PanelSkipped,
    PanelSubmitted,
    RunStarted,
    event_to_dict,
)
from storycore.engine._summary import PanelOutcome, RenderSummary

__all__ = [
    "BackendChanged",
    "EngineEvent",
    "ImageEngine",
    "Notice",
    "PanelDone",
    "PanelFailed",
    "PanelOutcome",
    "PanelProgress",
    "PanelSkipped",
    "PanelSubmitted",
    "RenderRequest",
    "RenderSummary",
    "RunStarted",
    "event_to_dict",
]
