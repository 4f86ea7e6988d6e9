"""How a followed prompt ends: the errors raised for each outcome, and settling from history.

Server text in an ``execution_error`` (the exception's type, message, the node's id and class)
is untrusted: every known secret is hidden (:func:`storycore._redact.redact`; a server may echo
the API key it was sent), lone surrogates become U+FFFD and the message is cut to
:data:`MAX_MESSAGE` characters, so the error can be shown and stored (journal, ``project.json``,
diagnostics) as it is. Pure apart from feeding the :class:`PromptHandle` (no I/O).
"""

from __future__ import annotations

import re
from typing import Any

from storycore._redact import redact
from storycore.comfyui._handle import PromptHandle
from storycore.comfyui._models import HistoryEntry, PromptStatus
from storycore.comfyui.events import ExecutionError, parse_message
from storycore.errors import (
    ExecutionFailed,
    PromptInterrupted,
    PromptLost,
    ServerTimeout,
)

__all__ = [
    "MAX_MESSAGE",
    "execution_failed",
    "interrupted",
    "lost",
    "server_text",
    "settle_from_history",
    "timed_out",
]

MAX_MESSAGE = 4000
"""The longest server error text kept (ComfyUI's are a line or two; a traceback is apart)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def server_text(value: Any, limit: int = MAX_MESSAGE) -> str:
    """Text a server sent, made safe to store: secrets hidden, lone surrogates as U+FFFD,
    at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(_SURROGATE.sub("\ufffd", text))


def _optional(value: str | None, limit: int = 200) -> str | None:
    return server_text(value, limit) if value is not None else None


def execution_failed(server: str, prompt_id: str, event: ExecutionError) -> ExecutionFailed:
    node_id, node_type = _optional(event.node_id), _optional(event.node_type)
    exception_type = server_text(event.exception_type, 200)
    exception_message = server_text(event.exception_message)
    node = f"node {node_id} ({node_type})" if node_id else "a node"
    message = " ".join(exception_message.split())
    return ExecutionFailed(
        f"{node} failed: {exception_type}: {message}",
        where=f"{server} prompt {prompt_id}",
        hint="fix the node's inputs or install what it needs, then submit again",
        prompt_id=prompt_id,
        node_id=node_id,
        node_type=node_type,
        exception_type=exception_type,
        exception_message=exception_message,
    )


def interrupted(server: str, prompt_id: str, node_id: str | None) -> PromptInterrupted:
    at = f" at node {server_text(node_id, 200)}" if node_id else ""
    return PromptInterrupted(
        f"prompt {prompt_id} was interrupted{at}",
        where=server,
        hint="submit it again to render it",
    )


def lost(server: str, prompt_id: str, grace: float) -> PromptLost:
    return PromptLost(
        f"prompt {prompt_id} is neither queued, running nor in the history "
        f"(checked for {grace:g} s)",
        where=server,
        hint="the server probably restarted; submit the prompt again",
    )


def timed_out(server: str, prompt_id: str, why: str) -> ServerTimeout:
    return ServerTimeout(
        f"gave up on prompt {prompt_id}: {why}",
        where=server,
        hint="raise prompt_deadline / idle_timeout for long jobs, or check the server",
    )


def settle_from_history(
    server: str, handle: PromptHandle, entry: HistoryEntry, *, via: str
) -> None:
    """Settle ``handle`` from its history entry (the status must be known)."""
    if handle.done():
        return
    # Replay what the history recorded and the stream has not shown (polling, WS gaps).
    for name, data in entry.messages:
        event = parse_message({"type": name, "data": data})
        if event is not None and type(event) not in handle.seen:
            handle.feed(event)
    if entry.status is PromptStatus.SUCCESS:
        handle.succeed(entry, via=via)
    elif entry.status is PromptStatus.INTERRUPTED:
        data = entry.message("execution_interrupted") or {}
        node = data.get("node_id")
        handle.fail(
            "interrupted", interrupted(server, handle.prompt_id, _text(node) if node else None)
        )
    else:
        data = entry.message("execution_error") or {}
        error = ExecutionError(
            prompt_id=handle.prompt_id,
            node_id=_text(data["node_id"]) if data.get("node_id") is not None else None,
            node_type=_text(data["node_type"]) if data.get("node_type") else None,
            exception_type=_text(data.get("exception_type") or "Exception"),
            exception_message=_text(data.get("exception_message") or "no message recorded"),
        )
        handle.fail("error", execution_failed(server, handle.prompt_id, error))


def _text(value: Any) -> str:
    """A history value as text, whatever its type (a number past ``str()``'s digit limit or a
    deeply nested list included)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except (ValueError, RecursionError):
        return "(unreadable)"
