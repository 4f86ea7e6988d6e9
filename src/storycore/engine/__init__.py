"""The Image Engine: a whole board across one or many ComfyUI servers, resumable."""

from storycore.engine._backends import (
    MODEL_FOLDERS,
    BackendSpec,
    backend_specs,
    client_for,
    client_timeouts,
    desktop_port_for,
    desktop_spec,
    read_node_and_model_lists,
    unreachable_error,
)
from storycore.engine._engine import ImageEngine
from storycore.engine._events import (
    BackendChanged,
    EngineEvent,
    Notice,
    PanelDone,
    PanelFailed,
    PanelPlanned,
    PanelPreview,
    PanelProgress,
    PanelSkipped,
    PanelSubmitted,
    RunStarted,
    event_to_dict,
)
from storycore.engine._prepare import graph_options, load_templates
from storycore.engine._request import RenderRequest
from storycore.engine._summary import PanelOutcome, RenderSummary

__all__ = [
    "MODEL_FOLDERS",
    "BackendChanged",
    "BackendSpec",
    "EngineEvent",
    "ImageEngine",
    "Notice",
    "PanelDone",
    "PanelFailed",
    "PanelOutcome",
    "PanelPlanned",
    "PanelPreview",
    "PanelProgress",
    "PanelSkipped",
    "PanelSubmitted",
    "RenderRequest",
    "RenderSummary",
    "RunStarted",
    "backend_specs",
    "client_for",
    "client_timeouts",
    "desktop_port_for",
    "desktop_spec",
    "event_to_dict",
    "graph_options",
    "load_templates",
    "read_node_and_model_lists",
    "unreachable_error",
]
