"""How a followed prompt ends: the errors raised for each outcome, and settling from history.

Pure apart from feeding the :class:`PromptHandle` (no I/O).
"""

from __future__ import annotations

from storycore.comfyui._handle import PromptHandle
from storycore.comfyui._models import HistoryEntry, PromptStatus
from storycore.comfyui.events import ExecutionError, parse_message
from storycore.errors import (
    ExecutionFailed,
    PromptInterrupted,
    PromptLost,
    ServerTimeout,
)

__all__ = ["execution_failed", "interrupted", "lost", "settle_from_history", "timed_out"]


def execution_failed(server: str, prompt_id: str, event: ExecutionError) -> ExecutionFailed:
    node = f"node {event.node_id} ({event.node_type})" if event.node_id else "a node"
    message = " ".join(event.exception_message.split())
    return ExecutionFailed(
        f"{node} failed: {event.exception_type}: {message}",
        where=f"{server} prompt {prompt_id}",
        hint="fix the node's inputs or install what it needs, then submit again",
        prompt_id=prompt_id,
        node_id=event.node_id,
        node_type=event.node_type,
        exception_type=event.exception_type,
        exception_message=event.exception_message,
    )


def interrupted(server: str, prompt_id: str, node_id: str | None) -> PromptInterrupted:
    at = f" at node {node_id}" if node_id else ""
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
            "interrupted", interrupted(server, handle.prompt_id, str(node) if node else None)
        )
    else:
        data = entry.message("execution_error") or {}
        error = ExecutionError(
            prompt_id=handle.prompt_id,
            node_id=str(data["node_id"]) if data.get("node_id") is not None else None,
            node_type=str(data["node_type"]) if data.get("node_type") else None,
            exception_type=str(data.get("exception_type") or "Exception"),
            exception_message=str(data.get("exception_message") or "no message recorded"),
        )
        handle.fail("error", execution_failed(server, handle.prompt_id, error))
