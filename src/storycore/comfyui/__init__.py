"""Talking to ComfyUI: the client, event parsing, prompt tracking, the local server manager."""

from storycore.comfyui._capabilities import (
    DeviceInfo,
    ServerCapabilities,
    SystemInfo,
    parse_system_stats,
)
from storycore.comfyui._handle import (
    OverallProgress,
    PromptCompleted,
    PromptHandle,
    PromptQueued,
    TrackerEvent,
)
from storycore.comfyui._jobs_api import (
    JobError,
    JobPage,
    JobRecord,
    JobStatus,
    check_prompt_id,
    is_canonical_prompt_id,
)
from storycore.comfyui._limits import ClientLimits
from storycore.comfyui._models import (
    DownloadedFile,
    HistoryEntry,
    MediaKind,
    NodeError,
    NodeOutput,
    NodeTiming,
    OutputFile,
    PromptResult,
    PromptStatus,
    QueueItem,
    QueueState,
    SubmitResult,
    UploadedImage,
    describe_node_errors,
    node_sort_key,
    parse_history_entry,
    parse_node_errors,
    parse_queue,
)
from storycore.comfyui._transport import ClientTimeouts, ServerAddress, translate_errors
from storycore.comfyui.client import CancelOutcome, ClientState, ComfyUIClient
from storycore.comfyui.health import HealthMonitor, HealthState, backoff_schedule
from storycore.comfyui.install import ComfyUIInstall, detect_desktop, find_install
from storycore.comfyui.manager import (
    ComfyUIManager,
    ManagerOptions,
    desktop_port_allowed,
    options_from_settings,
)
from storycore.comfyui.supervisor import RestartEvent, Supervisor
from storycore.comfyui.tracker import PromptTracker

__all__ = [
    "CancelOutcome",
    "ClientLimits",
    "ClientState",
    "ClientTimeouts",
    "ComfyUIClient",
    "ComfyUIInstall",
    "ComfyUIManager",
    "DeviceInfo",
    "DownloadedFile",
    "HealthMonitor",
    "HealthState",
    "HistoryEntry",
    "JobError",
    "JobPage",
    "JobRecord",
    "JobStatus",
    "ManagerOptions",
    "MediaKind",
    "NodeError",
    "NodeOutput",
    "NodeTiming",
    "OutputFile",
    "OverallProgress",
    "PromptCompleted",
    "PromptHandle",
    "PromptQueued",
    "PromptResult",
    "PromptStatus",
    "PromptTracker",
    "QueueItem",
    "QueueState",
    "RestartEvent",
    "ServerAddress",
    "ServerCapabilities",
    "SubmitResult",
    "Supervisor",
    "SystemInfo",
    "TrackerEvent",
    "UploadedImage",
    "backoff_schedule",
    "check_prompt_id",
    "describe_node_errors",
    "desktop_port_allowed",
    "detect_desktop",
    "find_install",
    "is_canonical_prompt_id",
    "node_sort_key",
    "options_from_settings",
    "parse_history_entry",
    "parse_node_errors",
    "parse_queue",
    "parse_system_stats",
    "translate_errors",
]
