"""Typed views of ComfyUI's JSON answers: submit results, node errors, queue, history, outputs.

Pure: no I/O. Every parser accepts whatever the server sent and never raises on odd shapes
except where noted (they return empty values instead).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycore._text import node_sort_key

__all__ = [
    "DownloadedFile",
    "HistoryEntry",
    "MediaKind",
    "NodeError",
    "NodeOutput",
    "NodeTiming",
    "OutputFile",
    "PromptResult",
    "PromptStatus",
    "QueueItem",
    "QueueState",
    "SubmitResult",
    "UploadedImage",
    "describe_node_errors",
    "node_sort_key",
    "parse_history_entry",
    "parse_node_errors",
    "parse_queue",
]

_MAX_CHOICES = 25


@dataclass(frozen=True)
class NodeError:
    """One validation problem of one node, from ``node_errors`` of ``POST /prompt``."""

    node_id: str
    class_type: str
    type: str
    message: str
    details: str = ""
    input_name: str | None = None
    received_value: Any = None
    choices: tuple[Any, ...] | None = None
    dependent_outputs: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"node {self.node_id} ({self.class_type or '?'})"
        if self.input_name:
            text += f" input '{self.input_name}'"
        text += f": {self.message}"
        if self.type == "value_not_in_list":
            choices = list(self.choices or ())
            installed = ", ".join(repr(c) for c in choices[:_MAX_CHOICES]) or "nothing"
            if len(choices) > _MAX_CHOICES:
                installed += f", ... ({len(choices) - _MAX_CHOICES} more)"
            text += f"; got {self.received_value!r}, installed: [{installed}]"
        elif self.details and self.details != self.input_name:
            text += f" ({self.details})"
        return text


def _combo_choices(config: Any) -> tuple[Any, ...] | None:
    """Choices of a combo input config: ``[[choices], {opts}]`` or ``["COMBO", {options}]``."""
    if not isinstance(config, list | tuple) or not config:
        return None
    first = config[0]
    if isinstance(first, list | tuple):
        return tuple(first)
    if first == "COMBO" and len(config) > 1 and isinstance(config[1], Mapping):
        options = config[1].get("options")
        if isinstance(options, list | tuple):
            return tuple(options)
    return None


def parse_node_errors(node_errors: Any) -> list[NodeError]:
    """Flatten ComfyUI's ``node_errors`` dict into :class:`NodeError` records (sorted)."""
    if not isinstance(node_errors, Mapping):
        return []
    result: list[NodeError] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, Mapping):
            continue
        class_type = str(entry.get("class_type") or "")
        deps = entry.get("dependent_outputs")
        dependent = tuple(str(d) for d in deps) if isinstance(deps, list) else ()
        errors = entry.get("errors")
        for err in errors if isinstance(errors, list) else []:
            if not isinstance(err, Mapping):
                continue
            extra = err.get("extra_info")
            extra = extra if isinstance(extra, Mapping) else {}
            input_name = extra.get("input_name")
            result.append(
                NodeError(
                    node_id=str(node_id),
                    class_type=class_type,
                    type=str(err.get("type") or ""),
                    message=str(err.get("message") or ""),
                    details=str(err.get("details") or ""),
                    input_name=str(input_name) if input_name is not None else None,
                    received_value=extra.get("received_value"),
                    choices=_combo_choices(extra.get("input_config")),
                    dependent_outputs=dependent,
                )
            )
    result.sort(key=lambda e: (node_sort_key(e.node_id), e.input_name or ""))
    return result


def describe_node_errors(error: Mapping[str, Any] | None, node_errors: Any) -> str:
    """One paragraph naming the top-level error and every node error."""
    parts: list[str] = []
    if isinstance(error, Mapping):
        message = str(error.get("message") or error.get("type") or "").strip()
        details = str(error.get("details") or "").strip()
        if message:
            parts.append(message + (f" ({details})" if details else ""))
    problems = parse_node_errors(node_errors)
    parts.extend(p.describe() for p in problems)
    return "; ".join(parts) if parts else "the server refused the prompt"


@dataclass(frozen=True)
class SubmitResult:
    """The answer of ``POST /prompt``. ``node_errors`` lists branches that will not run."""

    prompt_id: str
    number: float
    client_id: str | None
    node_errors: tuple[NodeError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class QueueItem:
    number: float
    prompt_id: str
    client_id: str | None
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class QueueState:
    """``GET /queue``; ``pending`` sorted in execution order (by number)."""

    running: tuple[QueueItem, ...]
    pending: tuple[QueueItem, ...]

    def is_running(self, prompt_id: str) -> bool:
        return any(item.prompt_id == prompt_id for item in self.running)

    def position(self, prompt_id: str) -> int | None:
        """0 when running, 1.. for pending in execution order, ``None`` when absent."""
        if self.is_running(prompt_id):
            return 0
        for index, item in enumerate(self.pending, start=1):
            if item.prompt_id == prompt_id:
                return index
        return None

    def contains(self, prompt_id: str) -> bool:
        return self.position(prompt_id) is not None


def _queue_items(raw: Any) -> list[QueueItem]:
    items: list[QueueItem] = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, list) or len(entry) < 2:
            continue
        number = as_number(entry[0]) or 0.0
        extra = entry[3] if len(entry) > 3 and isinstance(entry[3], Mapping) else {}
        outputs = entry[4] if len(entry) > 4 and isinstance(entry[4], list) else []
        client_id = extra.get("client_id")
        items.append(
            QueueItem(
                number=number,
                prompt_id=str(entry[1]),
                client_id=str(client_id) if client_id is not None else None,
                outputs=tuple(str(o) for o in outputs),
            )
        )
    return items


def parse_queue(body: Any) -> QueueState:
    body = body if isinstance(body, Mapping) else {}
    pending = sorted(_queue_items(body.get("queue_pending")), key=lambda i: i.number)
    return QueueState(
        running=tuple(_queue_items(body.get("queue_running"))), pending=tuple(pending)
    )


class MediaKind(enum.StrEnum):
    IMAGE = "image"
    ANIMATION = "animation"
    GIF = "gif"
    VIDEO = "video"
    AUDIO = "audio"
    OTHER = "other"


_VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
_AUDIO_EXT = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".aac")


@dataclass(frozen=True)
class OutputFile:
    """One file a node produced: what ``/view`` needs to fetch it, and what it is."""

    filename: str
    subfolder: str
    type: str
    kind: MediaKind
    node_id: str = ""
    key: str = "images"
    format: str | None = None
    frame_rate: float | None = None

    def view_params(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def _media_kind(key: str, record: Mapping[str, Any], animated: bool) -> MediaKind:
    name = str(record.get("filename", "")).lower()
    fmt = str(record.get("format") or "").lower()
    if key == "audio" or fmt.startswith("audio/") or name.endswith(_AUDIO_EXT):
        return MediaKind.AUDIO
    if key in ("video", "videos") or fmt.startswith("video/") or name.endswith(_VIDEO_EXT):
        return MediaKind.VIDEO
    if key == "gifs" or name.endswith(".gif"):
        return MediaKind.GIF
    if key == "images":
        return MediaKind.ANIMATION if animated else MediaKind.IMAGE
    return MediaKind.OTHER


@dataclass(frozen=True)
class NodeOutput:
    """Everything one output node reported: files, and any other (non-file) values."""

    node_id: str
    files: tuple[OutputFile, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_node_output(node_id: str, output: Any) -> NodeOutput:
    output = output if isinstance(output, Mapping) else {}
    animated_raw = output.get("animated")
    animated = isinstance(animated_raw, list | tuple) and any(bool(a) for a in animated_raw)
    files: list[OutputFile] = []
    extra: dict[str, Any] = {}
    for key, value in output.items():
        records = value if isinstance(value, list) else None
        if records and all(isinstance(r, Mapping) and "filename" in r for r in records):
            for record in records:
                rate = record.get("frame_rate")
                files.append(
                    OutputFile(
                        filename=str(record.get("filename", "")),
                        subfolder=str(record.get("subfolder") or ""),
                        type=str(record.get("type") or "output"),
                        kind=_media_kind(str(key), record, animated),
                        node_id=str(node_id),
                        key=str(key),
                        format=str(record["format"]) if record.get("format") else None,
                        frame_rate=float(rate) if isinstance(rate, int | float) else None,
                    )
                )
        elif key != "animated":
            extra[str(key)] = value
    return NodeOutput(node_id=str(node_id), files=tuple(files), extra=extra)


class PromptStatus(enum.StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HistoryEntry:
    """One ``/history/{id}`` entry."""

    prompt_id: str
    status: PromptStatus
    completed: bool
    outputs: Mapping[str, NodeOutput]
    messages: tuple[tuple[str, Mapping[str, Any]], ...]
    number: float | None = None
    client_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def message(self, kind: str) -> Mapping[str, Any] | None:
        for name, data in self.messages:
            if name == kind:
                return data
        return None


def parse_history_entry(prompt_id: str, entry: Any) -> HistoryEntry | None:
    """Parse one history entry; ``None`` when it is not a mapping."""
    if not isinstance(entry, Mapping):
        return None
    status_raw = entry.get("status")
    status_raw = status_raw if isinstance(status_raw, Mapping) else {}
    messages: list[tuple[str, Mapping[str, Any]]] = []
    for item in status_raw.get("messages") or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], Mapping):
            messages.append((str(item[0]), item[1]))
    kinds = {name for name, _ in messages}
    status_str = str(status_raw.get("status_str") or "")
    if "execution_interrupted" in kinds:
        status = PromptStatus.INTERRUPTED
    elif status_str == "error" or "execution_error" in kinds:
        status = PromptStatus.ERROR
    elif status_str == "success":
        status = PromptStatus.SUCCESS
    else:
        status = PromptStatus.UNKNOWN
    outputs_raw = entry.get("outputs")
    outputs = {
        str(node_id): parse_node_output(str(node_id), out)
        for node_id, out in (outputs_raw.items() if isinstance(outputs_raw, Mapping) else [])
    }
    prompt = entry.get("prompt")
    number: float | None = None
    client_id: str | None = None
    if isinstance(prompt, list) and prompt:
        number = as_number(prompt[0])
        if len(prompt) > 3 and isinstance(prompt[3], Mapping) and prompt[3].get("client_id"):
            client_id = str(prompt[3]["client_id"])
    return HistoryEntry(
        prompt_id=prompt_id,
        status=status,
        completed=bool(status_raw.get("completed")),
        outputs=outputs,
        messages=tuple(messages),
        number=number,
        client_id=client_id,
        raw=entry,
    )


@dataclass(frozen=True)
class NodeTiming:
    """When one node ran, measured on this machine's monotonic clock (seconds)."""

    node_id: str
    class_type: str | None
    started: float | None
    finished: float | None
    cached: bool = False

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.started)


@dataclass(frozen=True)
class PromptResult:
    """A prompt that finished successfully: its outputs (from ``/history``) and timings."""

    prompt_id: str
    status: PromptStatus
    outputs: Mapping[str, NodeOutput]
    timings: Mapping[str, NodeTiming]
    cached_nodes: tuple[str, ...] = ()
    elapsed: float | None = None
    via: str = "websocket"
    history: HistoryEntry | None = field(default=None, repr=False)

    @property
    def files(self) -> tuple[OutputFile, ...]:
        """Every output file, ordered by node id."""
        ordered = sorted(self.outputs.values(), key=lambda o: node_sort_key(o.node_id))
        return tuple(f for output in ordered for f in output.files)


@dataclass(frozen=True)
class UploadedImage:
    """What ``/upload/image`` answered. ``name`` is what LoadImage must use."""

    name: str
    subfolder: str
    type: str
    sha256: str
    size: int

    @property
    def reference(self) -> str:
        """The LoadImage value: ``subfolder/name`` plus `` [type]`` when not ``input``."""
        ref = f"{self.subfolder}/{self.name}" if self.subfolder else self.name
        return ref if self.type == "input" else f"{ref} [{self.type}]"


@dataclass(frozen=True)
class DownloadedFile:
    """A file written by ``ComfyUIClient.download``; ``width``/``height``/``format`` when it
    was checked as an image."""

    path: Path
    size: int
    sha256: str
    content_type: str
    width: int | None = None
    height: int | None = None
    format: str | None = None


def as_number(value: Any) -> float | None:
    """A finite float from a server-provided queue number, or None (never OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def node_ids(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)
