"""ComfyUI WebSocket frames -> typed events. Pure: no I/O, never raises on bad input.

Text frames are JSON ``{"type": ..., "data": {...}}``. Binary frames start with a 4-byte
big-endian event type: 1 = preview image (4-byte format, 1 JPEG / 2 PNG, then the image),
2 = "unencoded" preview (in-process only in ComfyUI; read like 1 if one ever arrives),
3 = progress text (4-byte node-id length, node id, UTF-8 text), 4 = preview image with metadata
(4-byte JSON length, JSON ``{node_id, prompt_id, ..., image_type}``, then the image). Any other
type gives ``None``. An image's format is sniffed from its bytes; the declared one is used only
for bytes that are no known image (the engine decodes and bounds them before use).

Unknown message types and malformed frames give ``None``: a frame that is not JSON, nested too
deep, of the wrong shape, or with an id (prompt or node) that is not a string or number of at
most :data:`MAX_ID_LENGTH` characters. Numbers too large for a float are left out; lone
surrogates in text (which no UTF-8 file can hold) become U+FFFD.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BINARY_PREVIEW_IMAGE",
    "BINARY_PREVIEW_IMAGE_WITH_METADATA",
    "BINARY_TEXT",
    "BINARY_UNENCODED_PREVIEW_IMAGE",
    "MAX_ID_LENGTH",
    "MAX_METADATA_BYTES",
    "CachedNodes",
    "Event",
    "ExecutionDone",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStarted",
    "ExecutionSuccess",
    "FeatureFlags",
    "NodeExecuted",
    "NodeExecuting",
    "NodeProgress",
    "NodeState",
    "PreviewImage",
    "ProgressState",
    "ProgressText",
    "ServerStatus",
    "parse_binary_frame",
    "parse_message",
    "parse_text_frame",
]


@dataclass(frozen=True)
class ServerStatus:
    """``status``: how many prompts the server still has queued (``sid`` on the first one)."""

    queue_remaining: int | None
    sid: str | None = None
    prompt_id: None = None


@dataclass(frozen=True)
class FeatureFlags:
    flags: Mapping[str, Any]
    prompt_id: None = None


@dataclass(frozen=True)
class ExecutionStarted:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class CachedNodes:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class NodeExecuting:
    """``executing`` with a node: that node starts now."""

    prompt_id: str
    node_id: str
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionDone:
    """``executing`` with ``node: null``: the server is done with the prompt (always last)."""

    prompt_id: str


@dataclass(frozen=True)
class NodeProgress:
    """``progress``: one sampler step of one node."""

    prompt_id: str
    node_id: str | None
    value: float
    max: float


@dataclass(frozen=True, slots=True)
class NodeState:
    node_id: str
    value: float
    max: float
    state: str
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True)
class ProgressState:
    """``progress_state``: the state of every node the prompt has touched so far."""

    prompt_id: str
    nodes: tuple[NodeState, ...]


@dataclass(frozen=True)
class NodeExecuted:
    """``executed``: an output node's UI output (file records)."""

    prompt_id: str
    node_id: str
    output: Mapping[str, Any]
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviewImage:
    """A binary preview (or ``SaveImageWebsocket``) image.

    ``format`` is ``"JPEG"`` / ``"PNG"`` / ``"WEBP"`` / ``"unknown"``; ``prompt_id`` and
    ``node_id`` are known only for frames with metadata (type 4).
    """

    image: bytes = field(repr=False)
    format: str
    mime_type: str
    prompt_id: str | None = None
    node_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_type: int = 1


@dataclass(frozen=True)
class ProgressText:
    node_id: str
    text: str
    prompt_id: None = None


Event = (
    ServerStatus
    | FeatureFlags
    | ExecutionStarted
    | CachedNodes
    | NodeExecuting
    | ExecutionDone
    | NodeProgress
    | ProgressState
    | NodeExecuted
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | PreviewImage
    | ProgressText
)


MAX_ID_LENGTH = 1024
"""The longest prompt or node id accepted (ComfyUI's are uuids and short numbers)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD (storable in any UTF-8 file)."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _str(value: Any) -> str | None:
    """An id: a string or an integer of at most MAX_ID_LENGTH characters, else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _clean(value) if len(value) <= MAX_ID_LENGTH else None
    if isinstance(value, int) and -(10**MAX_ID_LENGTH) < value < 10**MAX_ID_LENGTH:
        return str(value)
    return None


def _text(value: Any, default: str = "") -> str:
    """Server text (an error message) as a storable string."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return _clean(value)
    try:
        return _clean(str(value))
    except (ValueError, RecursionError):  # an int past str()'s digit limit, deep nesting
        return default


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(s for s in (_str(v) for v in value) if s is not None)


def parse_text_frame(text: str | bytes) -> Event | None:
    """Parse one text frame. ``None`` for non-JSON, unknown types and bad shapes."""
    try:
        message = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    return parse_message(message)


def parse_message(message: Any) -> Event | None:
    """Parse an already-decoded ``{"type", "data"}`` message."""
    if not isinstance(message, Mapping):
        return None
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(kind, str) or not isinstance(data, Mapping):
        return None
    parser = _PARSERS.get(kind)
    if parser is None:
        return None
    try:
        return parser(data)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError):
        return None


def _status(data: Mapping[str, Any]) -> Event | None:
    status = data.get("status")
    if not isinstance(status, Mapping):
        return None
    exec_info = status.get("exec_info")
    remaining = _int(exec_info.get("queue_remaining")) if isinstance(exec_info, Mapping) else None
    return ServerStatus(queue_remaining=remaining, sid=_str(data.get("sid")))


def _feature_flags(data: Mapping[str, Any]) -> Event | None:
    return FeatureFlags(flags=dict(data))


def _execution_start(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    return ExecutionStarted(pid, _int(data.get("timestamp"))) if pid else None


def _execution_cached(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    if not pid or not isinstance(data.get("nodes"), list):
        return None
    return CachedNodes(pid, _ids(data["nodes"]))


def _executing(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    if not pid or "node" not in data:
        return None
    node = data["node"]
    if node is None:
        return ExecutionDone(pid)
    node_id = _str(node)
    if node_id is None:
        return None
    return NodeExecuting(pid, node_id, _str(data.get("display_node")))


def _progress(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    value, maximum = _num(data.get("value")), _num(data.get("max"))
    if not pid or value is None or maximum is None:
        return None
    return NodeProgress(pid, _str(data.get("node")), value, maximum)


def _progress_state(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    nodes = data.get("nodes")
    if not pid or not isinstance(nodes, Mapping):
        return None
    # Sent after every step of every node, each time with the state of every node so far:
    # the hottest parser, so the usual types (str ids, float values) take the short way.
    states: list[NodeState] = []
    for key, entry in nodes.items():
        if not isinstance(entry, Mapping):
            continue
        get = entry.get
        value, maximum, node_id, state = get("value"), get("max"), get("node_id"), get("state")
        display, parent, real = get("display_node_id"), get("parent_node_id"), get("real_node_id")
        if not (type(node_id) is str and 0 < len(node_id) <= 64 and node_id.isascii()):
            node_id = _str(node_id) or _str(key)
            if not node_id:
                continue
        states.append(
            NodeState(
                node_id=node_id,
                value=value if type(value) is float else (_num(value) or 0.0),
                max=maximum if type(maximum) is float else _max(maximum),
                state=state if type(state) is str and state else _text(state, "unknown"),
                display_node_id=display if type(display) is str else _str(display),
                parent_node_id=parent if type(parent) is str else _str(parent),
                real_node_id=real if type(real) is str else _str(real),
            )
        )
    return ProgressState(pid, tuple(states))


def _max(value: Any) -> float:
    number = _num(value)
    return number if number is not None else 1.0


def _executed(data: Mapping[str, Any]) -> Event | None:
    pid, node = _str(data.get("prompt_id")), _str(data.get("node"))
    output = data.get("output")
    if not pid or node is None:
        return None
    return NodeExecuted(
        pid,
        node,
        dict(output) if isinstance(output, Mapping) else {},
        _str(data.get("display_node")),
    )


def _execution_success(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    return ExecutionSuccess(pid, _int(data.get("timestamp"))) if pid else None


def _execution_error(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    if not pid:
        return None
    trace = data.get("traceback")
    return ExecutionError(
        prompt_id=pid,
        node_id=_str(data.get("node_id")),
        node_type=_str(data.get("node_type")),
        exception_type=_text(data.get("exception_type"), "Exception"),
        exception_message=_text(data.get("exception_message")),
        traceback=tuple(_text(t) for t in trace[:200]) if isinstance(trace, list) else (),
        executed=_ids(data.get("executed")),
    )


def _execution_interrupted(data: Mapping[str, Any]) -> Event | None:
    pid = _str(data.get("prompt_id"))
    if not pid:
        return None
    return ExecutionInterrupted(
        pid, _str(data.get("node_id")), _str(data.get("node_type")), _ids(data.get("executed"))
    )


_PARSERS = {
    "status": _status,
    "feature_flags": _feature_flags,
    "execution_start": _execution_start,
    "execution_cached": _execution_cached,
    "executing": _executing,
    "progress": _progress,
    "progress_state": _progress_state,
    "executed": _executed,
    "execution_success": _execution_success,
    "execution_error": _execution_error,
    "execution_interrupted": _execution_interrupted,
}

# Binary event types: ComfyUI protocol.py BinaryEventTypes, as server.py send / send_image /
# send_image_with_metadata / send_progress_text put them on the wire (@ 002c3fb9).
# 1: 4-byte format (1 JPEG, 2 PNG), the image (a client that did not announce preview metadata).
# 2: in-process only: ``send`` encodes its (format, PIL image, max size) as a type-1 frame, so
#    ComfyUI never sends a 2; one from a node's own ``send_bytes(2, ...)`` is read like a 1, its
#    format sniffed from the bytes, nothing else trusted.
# 3: 4-byte node-id length, the node id, UTF-8 text.
# 4: 4-byte JSON length, JSON {node_id, prompt_id, display_node_id, parent_node_id, real_node_id,
#    image_type} (comfy_execution/progress.py WebUIProgressHandler @ 1b71f275), the image.
BINARY_PREVIEW_IMAGE = 1
BINARY_UNENCODED_PREVIEW_IMAGE = 2
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4
MAX_METADATA_BYTES = 64 * 1024  # the longest preview metadata read (ComfyUI's: ~170 bytes)

_FORMATS = {1: ("JPEG", "image/jpeg"), 2: ("PNG", "image/png")}
_MIME_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def _sniff(image: bytes) -> tuple[str, str]:
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "image/png"
    if image.startswith(b"\xff\xd8\xff"):
        return "JPEG", "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "WEBP", "image/webp"
    return "unknown", "application/octet-stream"


def parse_binary_frame(frame: bytes | bytearray | memoryview) -> Event | None:
    """Parse one binary frame of any type (1-4). ``None`` for short or malformed frames and
    for event types this client does not know (a newer server's, a custom node's)."""
    data = bytes(frame)
    if len(data) < 8:
        return None
    event_type, word = struct.unpack(">II", data[:8])
    if event_type in (BINARY_PREVIEW_IMAGE, BINARY_UNENCODED_PREVIEW_IMAGE):
        image = data[8:]
        sniffed = _sniff(image)
        # What the bytes are, else the declared format (type 2 is never ComfyUI's own).
        declared = _FORMATS.get(word) if event_type == BINARY_PREVIEW_IMAGE else None
        fmt, mime = declared if declared is not None and sniffed[0] == "unknown" else sniffed
        return PreviewImage(image=image, format=fmt, mime_type=mime, event_type=event_type)
    if event_type == BINARY_TEXT:
        return _progress_text(data, word)
    if event_type == BINARY_PREVIEW_IMAGE_WITH_METADATA:
        return _preview_with_metadata(data, word)
    return None


def _progress_text(data: bytes, length: int) -> Event | None:
    if 8 + length > len(data) or length > MAX_ID_LENGTH:
        return None
    try:
        node_id = data[8 : 8 + length].decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = data[8 + length :].decode("utf-8", errors="replace")
    return ProgressText(node_id=_clean(node_id), text=_clean(text))


def _preview_with_metadata(data: bytes, length: int) -> Event | None:
    if 8 + length > len(data) or length > MAX_METADATA_BYTES:
        return None
    try:
        metadata = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(metadata, Mapping):
        return None
    image = data[8 + length :]
    sniffed = _sniff(image)
    declared = _MIME_FORMATS.get(mime := str(metadata.get("image_type") or ""))
    fmt, mime = (declared, mime) if declared is not None and sniffed[0] == "unknown" else sniffed
    return PreviewImage(
        image=image,
        format=fmt,
        mime_type=mime,
        prompt_id=_str(metadata.get("prompt_id")),
        node_id=_str(metadata.get("node_id")),
        metadata=dict(metadata),
        event_type=BINARY_PREVIEW_IMAGE_WITH_METADATA,
    )
