"""Finding the servers for a run: the named URLs, else the local ComfyUI (ComfyUI Desktop's
port, or the install, started and supervised), else the built-in emulator rendering clearly
marked placeholders.

A server the user named (``--backend``, the configured ``backends``) is never silently replaced:
when none of them answers the run stops with :class:`~storycore.errors.NoServerReachable`
(exit 4) unless the user asked for placeholders (``--mock``, ``--fallback mock``, or
``render.fallback = "mock"`` written in a settings file, which the CLI passes as ``fallback``).
The built-in default ``render.fallback = "mock"`` applies only when nothing was named.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from storycore.config import Settings
from storycore.engine._backends import (
    Backend,
    BackendSpec,
    MockServer,
    backend_specs,
    connect_all,
    connect_backend,
    describe_unreachable,
    desktop_spec,
    required_models,
    unreachable_error,
)
from storycore.engine._events import BackendChanged, EventSink, Notice
from storycore.engine._prepare import preview_graphs
from storycore.errors import ComfyUIError, InstallNotFound, ManagerError
from storycore.monitoring import PerformanceMonitor
from storycore.panels import Panel
from storycore.project import Project
from storycore.workflows import GraphOptions

__all__ = ["connect_pool", "fallback_allowed"]


def fallback_allowed(
    fallback: Literal["mock", "fail"] | None, *, named: bool, settings: Settings
) -> bool:
    """May the run render placeholders when no server answers? ``fallback`` is what the user
    asked for (``None``: nothing); without it, only when no server was ``named``, by
    ``render.fallback``."""
    if fallback is not None:
        return fallback == "mock"
    return not named and settings.render.fallback == "mock"


async def connect_pool(
    settings: Settings,
    emit: EventSink,
    *,
    urls: Sequence[str],
    mock: bool,
    fallback: Literal["mock", "fail"] | None,
    project: Project,
    panels: Sequence[Panel],
    options: GraphOptions,
    monitor: PerformanceMonitor | None,
    changed: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    desktop_port: int | None = None,
) -> list[Backend]:
    """The backends of this run; anything started is stopped or detached by ``stack``.

    ``desktop_port``: also try ComfyUI Desktop's port when ``comfyui.port`` does not answer
    (only passed when the user chose no port; see :func:`~._backends.desktop_port_for`).
    """
    if not mock:
        named = bool(urls or settings.backends)
        specs = backend_specs(settings, urls)
        backends, failed = await connect_all(specs, settings, settings.comfyui.health_check_timeout)
        for spec, err in failed:
            emit(BackendChanged(spec.url, "down", err.message))
        desktop = None if named or backends else desktop_spec(settings, desktop_port)
        if desktop is not None:
            found, missed = await connect_all([desktop], settings, 2.0)
            failed += missed
            if found:
                backends = found
                emit(
                    Notice(
                        "info",
                        f"nothing answers at {specs[0].url}; using ComfyUI Desktop at "
                        f"{desktop.url} (set comfyui.port to choose a server yourself)",
                    )
                )
        if not backends and not named:
            managed = await _start_managed(settings, emit, monitor, changed, stack)
            if managed is not None:
                backends = [managed]
        if backends:
            for backend in backends:
                emit(BackendChanged(backend.url, "mock" if backend.mock else "healthy"))
            return backends
        if not fallback_allowed(fallback, named=named, settings=settings):
            raise unreachable_error(failed, named=named)
        emit(
            Notice(
                "warning",
                "NO COMFYUI SERVER IS REACHABLE ("
                + describe_unreachable(failed)
                + "): rendering clearly marked PLACEHOLDER frames with the built-in "
                "emulator. Start ComfyUI and run again to replace them.",
            )
        )
    graphs = preview_graphs(project, panels, options)
    mock_server = MockServer(
        Path(project.root) / ".storycore" / "mock-server", required_models(graphs)
    )
    url = await mock_server.start()
    stack.push_async_callback(mock_server.stop)
    backend = await connect_backend(BackendSpec(url), settings, mock=True)
    emit(BackendChanged(url, "mock", "built-in emulator"))
    return [backend]


async def _start_managed(
    settings: Settings,
    emit: EventSink,
    monitor: PerformanceMonitor | None,
    changed: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> Backend | None:
    """Start (or adopt) the local ComfyUI install and supervise it while we render."""
    from storycore.comfyui import ComfyUIManager, RestartEvent, Supervisor
    from storycore.comfyui import options_from_settings as manager_options

    # ComfyUI Desktop's port was tried (or not to be tried) by connect_pool already.
    manager = ComfyUIManager(manager_options(settings, detect_desktop=False))
    try:
        found = await asyncio.to_thread(manager.resolve_install)
    except InstallNotFound as err:
        emit(Notice("info", f"no local ComfyUI to start: {err.paragraph()}"))
        return None
    emit(Notice("info", f"starting ComfyUI: {found.describe()}"))
    began = time.monotonic()
    try:
        result = await manager.start()
        backend = await connect_backend(BackendSpec(result.url), settings)
    except (ManagerError, ComfyUIError) as err:
        emit(Notice("warning", f"could not start ComfyUI: {err.paragraph()}"))
        return None
    if monitor is not None:
        monitor.record_timing("server_start", time.monotonic() - began)
    log = f"; log: {result.log_path}" if result.log_path else ""
    emit(Notice("info", result.message + log))
    if result.managed:
        # The server outlives the run (the next run starts faster); say how to stop it.
        stack.callback(manager.detach)
        stack.callback(
            emit,
            Notice(
                "info",
                f"ComfyUI keeps running at {result.url}; stop it with `storycore comfyui stop`",
            ),
        )

        async def on_restart(event: RestartEvent) -> None:
            emit(
                Notice(
                    "warning",
                    f"ComfyUI crashed ({event.reason}) and was restarted "
                    f"(attempt {event.attempt}); its panels are submitted again",
                )
            )
            backend.wake.set()
            changed.set()

        await stack.enter_async_context(Supervisor(manager, on_restart=on_restart))
    return backend
