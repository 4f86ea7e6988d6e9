"""Classify any exception into a :class:`Diagnosis`.

StoryCore's own errors (``storycore.errors``) carry most of what is needed; ComfyUI bodies kept on
:class:`~storycore.errors.PromptRejected` / :class:`~storycore.errors.ExecutionFailed` go through
:mod:`storycore.diagnostics._comfy`; library and OS errors are recognised by type. Pure: no I/O.
"""

from __future__ import annotations

import asyncio
import errno
import re
from dataclasses import replace

import aiohttp

from storycore.diagnostics._comfy import (
    _resolve,
    classify_execution_error,
    classify_prompt_rejection,
)
from storycore.diagnostics._model import (
    Category,
    Diagnosis,
    DiagnosticContext,
    Severity,
    Strategy,
)
from storycore.errors import (
    AssetError,
    ChecksumMismatch,
    ComfyUIError,
    ConfigError,
    ExecutionFailed,
    InstallNotFound,
    ManagerError,
    PortInUse,
    ProjectError,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    RenderError,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    StartupFailed,
    StopFailed,
    StoryCoreError,
    UnsafePathError,
    WorkflowError,
)

__all__ = ["classify"]

_PORT = re.compile(r"(?:port\s+|:)(\d{2,5})\b", re.I)
_WS_ERRORS = (aiohttp.WSServerHandshakeError, aiohttp.WebSocketError)


def _d(
    exc: BaseException,
    category: Category,
    severity: Severity,
    strategy: Strategy,
    code: str,
    suggestion: str,
    *,
    fallback: Strategy = Strategy.ABORT,
    retry_limit: int = 0,
) -> Diagnosis:
    where = exc.where if isinstance(exc, StoryCoreError) else None
    message = exc.message if isinstance(exc, StoryCoreError) else (str(exc) or type(exc).__name__)
    return Diagnosis(
        category=category,
        severity=severity,
        strategy=strategy,
        fallback=fallback,
        retry_limit=retry_limit if strategy is Strategy.RETRY else 0,
        code=code,
        message=message,
        suggestion=suggestion,
        where=where,
        error_type=type(exc).__name__,
    )


def _hint(exc: BaseException, default: str) -> str:
    hint = exc.hint if isinstance(exc, StoryCoreError) else None
    return hint or default


def _is_websocket(exc: BaseException) -> bool:
    if isinstance(exc, _WS_ERRORS):
        return True
    where = exc.where if isinstance(exc, StoryCoreError) else None
    return bool(where) and ("/ws" in str(where) or str(where).startswith("ws"))


def classify(exc: BaseException, context: DiagnosticContext | None = None) -> Diagnosis:
    """Say what ``exc`` is, how bad, what the user should do and what the engine should do."""
    ctx = context or DiagnosticContext()
    failover = _resolve(Strategy.FAILOVER, ctx)

    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return _d(exc, Category.SYSTEM, Severity.LOW, Strategy.ABORT, "cancelled", "run again")

    # ComfyUI's own bodies first: they say more than the exception type.
    if isinstance(exc, ExecutionFailed):
        body = {
            "node_id": exc.node_id,
            "node_type": exc.node_type,
            "exception_type": exc.exception_type,
            "exception_message": exc.exception_message or exc.message,
        }
        diagnosis = classify_execution_error(body, ctx)
        return diagnosis if diagnosis.where else _with_where(diagnosis, exc.where)
    if isinstance(exc, PromptRejected):
        diagnosis = classify_prompt_rejection(
            {"error": exc.error or {"message": exc.message}, "node_errors": exc.node_errors}, ctx
        )
        return diagnosis if diagnosis.where else _with_where(diagnosis, exc.where)

    if _is_websocket(exc) and isinstance(exc, ComfyUIError | aiohttp.ClientError):
        return _d(
            exc,
            Category.NETWORK,
            Severity.MEDIUM,
            Strategy.POLL,
            "websocket_failed",
            "the WebSocket failed; progress is followed by polling /history instead (a proxy "
            "that drops WebSockets, or an Origin header, are the usual causes)",
        )
    if isinstance(
        exc,
        ServerUnreachable
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | ConnectionError,
    ):
        return _d(
            exc,
            Category.NETWORK,
            Severity.HIGH,
            Strategy.RETRY,
            "unreachable",
            _hint(exc, "check that ComfyUI runs and that the URL and port are right"),
            fallback=failover,
            retry_limit=3,
        )
    if isinstance(exc, ServerTimeout | TimeoutError):
        return _d(
            exc,
            Category.NETWORK,
            Severity.MEDIUM,
            Strategy.RETRY,
            "timeout",
            _hint(exc, "the server is slow or busy; raise the timeout if this repeats"),
            fallback=failover,
            retry_limit=2,
        )
    if isinstance(exc, ServerResponseError):
        status = exc.status or 0
        if status == 500 and str(exc.where or "").rstrip("/").endswith("/prompt"):
            # ComfyUI answers 500 text/plain to a prompt body it cannot read (a list, not
            # JSON): the same body fails again, so this is our bug, not a server hiccup.
            return _d(
                exc,
                Category.WORKFLOW,
                Severity.HIGH,
                Strategy.ABORT,
                "malformed_prompt",
                "ComfyUI could not read the prompt body (not a JSON object); please report it "
                "with the diagnostic history",
            )
        if status >= 500 or status in (408, 429):
            return _d(
                exc,
                Category.SERVICE,
                Severity.HIGH,
                Strategy.RETRY,
                "server_error",
                _hint(exc, "the server failed on its side; its console log says why"),
                fallback=failover,
                retry_limit=2,
            )
        return _d(
            exc,
            Category.SERVICE,
            Severity.HIGH,
            Strategy.ABORT,
            "bad_response",
            _hint(exc, "the server answered something unexpected: is it really ComfyUI?"),
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        transient = exc.status >= 500 or exc.status in (408, 429)
        return _d(
            exc,
            Category.SERVICE,
            Severity.HIGH,
            Strategy.RETRY if transient else Strategy.ABORT,
            "server_error" if transient else "bad_response",
            f"the server answered HTTP {exc.status}",
            fallback=failover,
            retry_limit=2,
        )
    if isinstance(exc, PromptLost):
        return _d(
            exc,
            Category.SERVICE,
            Severity.MEDIUM,
            Strategy.RETRY,
            "prompt_lost",
            "the server forgot the prompt (restarted?); it is submitted again",
            fallback=failover,
            retry_limit=1,
        )
    if isinstance(exc, PromptInterrupted):
        return _d(
            exc,
            Category.SERVICE,
            Severity.LOW,
            Strategy.ABORT,
            "interrupted",
            "run again to resume",
        )
    if isinstance(exc, UnsafePathError):
        return _d(
            exc,
            Category.SYSTEM,
            Severity.CRITICAL,
            Strategy.ABORT,
            "unsafe_path",
            "the server sent a file name that leaves the target folder; nothing was written",
        )
    if isinstance(exc, PortInUse):
        return _d(
            exc,
            Category.CONFIGURATION,
            Severity.HIGH,
            Strategy.ABORT,
            "port_in_use",
            _port_suggestion(exc, ctx),
        )
    if isinstance(exc, InstallNotFound):
        return _d(
            exc,
            Category.CONFIGURATION,
            Severity.CRITICAL,
            failover,
            "install_not_found",
            _hint(exc, "set the ComfyUI install path (storycore config set comfyui.install_path)"),
        )
    if isinstance(exc, StartupFailed):
        return _d(
            exc,
            Category.SERVICE,
            Severity.CRITICAL,
            failover,
            "startup_failed",
            _hint(exc, "read the ComfyUI log in the state folder; `storycore doctor` checks it"),
        )
    if isinstance(exc, StopFailed | ManagerError):
        return _d(
            exc,
            Category.SERVICE,
            Severity.MEDIUM,
            Strategy.ABORT,
            "manager",
            _hint(exc, "stop the leftover ComfyUI processes by hand"),
        )
    if isinstance(exc, ConfigError | ProjectError):
        return _d(
            exc,
            Category.CONFIGURATION,
            Severity.HIGH,
            Strategy.ABORT,
            "configuration",
            _hint(exc, "fix the setting named above"),
        )
    if isinstance(exc, WorkflowError):
        return _d(
            exc,
            Category.WORKFLOW,
            Severity.HIGH,
            Strategy.ABORT,
            "workflow",
            _hint(exc, "fix the workflow or template named above"),
        )
    if isinstance(exc, ChecksumMismatch):
        return _d(
            exc,
            Category.SYSTEM,
            Severity.HIGH,
            Strategy.RETRY,
            "checksum",
            _hint(exc, "the file is damaged; it is downloaded again"),
            retry_limit=1,
        )
    if isinstance(exc, AssetError):
        return _d(
            exc,
            Category.SYSTEM,
            Severity.MEDIUM,
            Strategy.RETRY,
            "asset",
            _hint(exc, "check the disk and the download URL"),
            retry_limit=2,
        )
    if isinstance(exc, ComfyUIError | RenderError):
        return _d(
            exc, Category.SERVICE, Severity.HIGH, Strategy.ABORT, "service", _hint(exc, "see above")
        )
    text = str(exc).lower()
    if isinstance(exc, MemoryError) or "out of memory" in text:
        return _d(
            exc,
            Category.RESOURCE,
            Severity.CRITICAL,
            Strategy.ABORT,
            "out_of_memory",
            "out of memory: lower the render size or steps, or close other programs",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _d(
            exc,
            Category.RESOURCE,
            Severity.CRITICAL,
            Strategy.ABORT,
            "disk_full",
            "the disk is full: free space in the project folder, or move the project",
        )
    if isinstance(exc, PermissionError):
        return _d(
            exc,
            Category.SYSTEM,
            Severity.HIGH,
            Strategy.ABORT,
            "permission",
            f"no permission for {exc.filename or 'a file'}: check its owner and mode",
        )
    if isinstance(exc, FileNotFoundError):
        return _d(
            exc,
            Category.CONFIGURATION,
            Severity.HIGH,
            Strategy.ABORT,
            "file_not_found",
            f"{exc.filename or 'a file'} does not exist: check the path",
        )
    return _d(
        exc,
        Category.SYSTEM,
        Severity.HIGH,
        Strategy.ABORT,
        "unexpected",
        "an unexpected error; please report it with the diagnostic history",
    )


def _with_where(diagnosis: Diagnosis, where: str | None) -> Diagnosis:
    return replace(diagnosis, where=where)


def _port_suggestion(exc: PortInUse, ctx: DiagnosticContext) -> str:
    match = _PORT.search(f"{exc.where or ''} {exc.message}")
    port = int(match.group(1)) if match else None
    holder = ctx.port_holders.get(port) if port is not None else None
    if port is not None and holder is not None:
        pid, name = holder
        return (
            f"port {port} is held by pid {pid} (`{name}`): stop it, or choose another port "
            "with --port"
        )
    return _hint(exc, "another program holds the port: stop it or choose another port")
