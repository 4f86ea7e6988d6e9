"""Classification of StoryCore, library and OS exceptions."""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import pytest

from storycore.diagnostics import Category, DiagnosticContext, Severity, Strategy, classify
from storycore.errors import (
    ChecksumMismatch,
    ConfigError,
    InstallNotFound,
    PortInUse,
    PromptLost,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    StartupFailed,
    UnsafePathError,
)


def _http_error(status: int) -> aiohttp.ClientResponseError:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    url = URL("http://127.0.0.1:8188/prompt")
    info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(info, (), status=status, message="x")


@pytest.mark.parametrize(
    ("exc", "category", "strategy"),
    [
        (
            ServerUnreachable("refused", where="http://127.0.0.1:1"),
            Category.NETWORK,
            Strategy.RETRY,
        ),
        (ServerTimeout("slow"), Category.NETWORK, Strategy.RETRY),
        (ConnectionResetError("reset"), Category.NETWORK, Strategy.RETRY),
        (aiohttp.ServerDisconnectedError(), Category.NETWORK, Strategy.RETRY),
        (ServerResponseError("boom", status=503), Category.SERVICE, Strategy.RETRY),
        (ServerResponseError("odd", status=404), Category.SERVICE, Strategy.ABORT),
        (PromptLost("gone"), Category.SERVICE, Strategy.RETRY),
        (ConfigError("bad port", where="comfyui.port"), Category.CONFIGURATION, Strategy.ABORT),
        (UnsafePathError("escape"), Category.SYSTEM, Strategy.ABORT),
        (ChecksumMismatch("differs"), Category.SYSTEM, Strategy.RETRY),
        (MemoryError(), Category.RESOURCE, Strategy.ABORT),
        (OSError(errno.ENOSPC, "No space left on device"), Category.RESOURCE, Strategy.ABORT),
        (PermissionError(errno.EACCES, "denied", "/x"), Category.SYSTEM, Strategy.ABORT),
        (ValueError("bug"), Category.SYSTEM, Strategy.ABORT),
        (_http_error(503), Category.SERVICE, Strategy.RETRY),
        (_http_error(403), Category.SERVICE, Strategy.ABORT),
    ],
)
def test_categories_and_strategies(
    exc: BaseException, category: Category, strategy: Strategy
) -> None:
    diagnosis = classify(exc)
    assert diagnosis.category is category
    assert diagnosis.strategy is strategy
    assert diagnosis.suggestion
    assert diagnosis.error_type == type(exc).__name__
    if strategy is Strategy.RETRY:
        assert diagnosis.retry_limit >= 1
    else:
        assert diagnosis.retry_limit == 0


def test_websocket_failures_fall_back_to_polling() -> None:
    diagnosis = classify(ServerUnreachable("closed", where="ws://127.0.0.1:8188/ws?clientId=a"))
    assert diagnosis.strategy is Strategy.POLL
    assert diagnosis.code == "websocket_failed"


def test_port_in_use_names_the_holder() -> None:
    exc = PortInUse("port 8188 is taken", where="127.0.0.1:8188")
    ctx = DiagnosticContext(port_holders={8188: (1234, "nginx")})
    diagnosis = classify(exc, ctx)
    assert diagnosis.suggestion.startswith("port 8188 is held by pid 1234 (`nginx`)")
    assert classify(exc).suggestion != diagnosis.suggestion


def test_failover_only_when_the_caller_can() -> None:
    exc = StartupFailed("exited with 1", hint="see the log")
    assert classify(exc).strategy is Strategy.ABORT
    assert classify(exc, DiagnosticContext(allow_mock=True)).strategy is Strategy.MOCK
    both = DiagnosticContext(allow_mock=True, can_failover=True)
    assert classify(exc, both).strategy is Strategy.FAILOVER
    assert classify(exc).severity is Severity.CRITICAL
    assert classify(exc).suggestion == "see the log"
    unreachable = classify(ServerUnreachable("refused"), both)
    assert unreachable.fallback is Strategy.FAILOVER
    assert classify(InstallNotFound("no main.py")).category is Category.CONFIGURATION


def test_cancellation_is_never_retried() -> None:
    assert classify(asyncio.CancelledError()).strategy is Strategy.ABORT


async def test_gathered_context_names_the_real_port_holder() -> None:
    import os
    import socket

    from storycore.diagnostics import gather_context
    from storycore.platform import port_holder

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        if port_holder(port) is None:
            pytest.skip("this OS does not tell who listens on a port")
        ctx = await gather_context(ports=[port], installed_models={"loras": ("a.safetensors",)})
    diagnosis = classify(PortInUse(f"port {port} is taken", where=f"127.0.0.1:{port}"), ctx)
    assert diagnosis.suggestion.startswith(f"port {port} is held by pid {os.getpid()} (`")
    assert ctx.installed_models == {"loras": ["a.safetensors"]}
