"""The pool of ComfyUI servers a render uses: which to try, connecting, probing, the mock.

A :class:`Backend` is one server with its client, its prompt tracker, what it offers
(``/object_info``, model lists, version) and its load. The in-process emulator is a backend
like any other, marked ``mock`` so its frames are recorded as placeholders.

Which servers a command tries (``generate-images``, ``preflight``, ``doctor`` alike): the
``--backend`` URLs, else the configured ``backends``, else ``comfyui.host:port``; and, only when
the user chose none of those (nor the port), ComfyUI Desktop's own port
(:data:`~storycore.comfyui.install.DESKTOP_PORT`, 8000) on the same host when the first does not
answer (:func:`desktop_port_for`). When none answers, :func:`unreachable_error` says why for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycore.comfyui import (
    ClientLimits,
    ClientTimeouts,
    ComfyUIClient,
    PromptTracker,
    ServerAddress,
    desktop_port_allowed,
)
from storycore.comfyui.install import DESKTOP_PORT
from storycore.config import BackendSettings, ResolvedSettings, Settings
from storycore.errors import ComfyUIError, NoServerReachable, ServerTimeout

__all__ = [
    "MODEL_FOLDERS",
    "Backend",
    "BackendSpec",
    "backend_specs",
    "client_for",
    "connect_backend",
    "desktop_port_for",
    "desktop_spec",
    "read_node_and_model_lists",
    "unreachable_error",
]

_log = logging.getLogger("storycore.engine")

MODEL_FOLDERS = ("checkpoints", "loras", "vae", "controlnet", "clip_vision", "ipadapter")


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend is and how to authenticate to it."""

    url: str
    token: str | None = None
    basic_auth: tuple[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    desktop: bool = False
    """This is ComfyUI Desktop's port, tried because nothing answered on ``comfyui.port``."""

    @property
    def label(self) -> str:
        """The URL, and why it was tried when that is not obvious."""
        return f"{self.url} (ComfyUI Desktop's port)" if self.desktop else self.url

    def address(self) -> ServerAddress:
        return ServerAddress(
            self.url, token=self.token, basic_auth=self.basic_auth, headers=dict(self.headers)
        )


def _spec_from(backend: BackendSettings) -> BackendSpec:
    basic = None
    if backend.username and backend.password is not None:
        basic = (backend.username, backend.password.get_secret_value())
    return BackendSpec(
        url=backend.url,
        token=backend.token.get_secret_value() if backend.token else None,
        basic_auth=basic,
        headers=dict(backend.headers),
        weight=backend.weight,
    )


def backend_specs(settings: Settings, urls: Sequence[str] = ()) -> list[BackendSpec]:
    """The servers to use: URLs from the command line, else the configured backends, else the
    local ComfyUI at ``comfyui.host:port``. Duplicates are dropped."""
    if urls:
        configured = {b.url: b for b in settings.backends}
        specs = [
            _spec_from(configured[u.rstrip("/")])
            if u.rstrip("/") in configured
            else BackendSpec(u.rstrip("/"))
            for u in urls
        ]
    elif settings.backends:
        specs = [_spec_from(b) for b in settings.backends]
    else:
        specs = [BackendSpec(settings.comfyui.url)]
    unique: dict[str, BackendSpec] = {}
    for spec in specs:
        unique.setdefault(spec.url, spec)
    return list(unique.values())


def desktop_port_for(resolved: ResolvedSettings, urls: Sequence[str] = ()) -> int | None:
    """ComfyUI Desktop's port when a command may try it after ``comfyui.port`` (pure): only when
    no URL was given (``urls``, the configured ``backends``) and the user chose neither the port,
    the host nor an install (:func:`storycore.comfyui.desktop_port_allowed`); else ``None``."""
    settings = resolved.settings
    if urls or settings.backends or not desktop_port_allowed(resolved):
        return None
    return None if settings.comfyui.port == DESKTOP_PORT else DESKTOP_PORT


def desktop_spec(settings: Settings, desktop_port: int | None) -> BackendSpec | None:
    """The spec of ComfyUI Desktop's port on ``comfyui.host`` (``None`` when not to be tried)."""
    if desktop_port is None:
        return None
    local = settings.comfyui.model_copy(update={"port": desktop_port})
    return BackendSpec(local.url, desktop=True)


def client_timeouts(settings: Settings) -> ClientTimeouts:
    c = settings.comfyui
    return ClientTimeouts(
        connect=c.connect_timeout,
        read=c.read_timeout,
        request_deadline=c.request_deadline,
        prompt_deadline=c.prompt_timeout,
        idle_timeout=c.idle_timeout,
        watchdog=max(c.health_check_interval * 2, 1.0),
        # a prompt absent from queue and history this long is lost (a restarted server)
        lost_grace=max(2.0, c.health_check_interval * 2),
    )


def client_for(
    spec: BackendSpec, settings: Settings, *, timeouts: ClientTimeouts | None = None
) -> ComfyUIClient:
    """A client (not yet open) for ``spec``'s server as the settings ask: its credentials, the
    timeouts and total deadline of a request (:func:`client_timeouts`, or ``timeouts``) and
    the size limits of the answers (``comfyui.max_response_mb``, ``max_image_mb``,
    ``max_image_megapixels``). Every command that talks to a configured server builds its
    client here (generate-images, preflight, doctor)."""
    return ComfyUIClient(
        spec.address(),
        timeouts or client_timeouts(settings),
        limits=ClientLimits.from_settings(settings.comfyui),
    )


@dataclass
class Backend:
    """One server in the pool."""

    spec: BackendSpec
    client: ComfyUIClient
    tracker: PromptTracker
    mock: bool
    object_info: dict[str, Any]
    models: dict[str, list[str]]
    system_stats: dict[str, Any]
    depth: int
    healthy: bool = True
    in_flight: int = 0
    last_checkpoint: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    down: asyncio.Event = field(default_factory=asyncio.Event)
    up: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.up.set()

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def version(self) -> str | None:
        system = self.system_stats.get("system", {})
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        return str(version) if version else None

    @property
    def node_classes(self) -> frozenset[str]:
        return frozenset(self.object_info)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.tracker.close()
        with contextlib.suppress(Exception):
            await self.client.close()

    async def nap(self, seconds: float) -> None:
        """Sleep until woken (a slot freed, work queued) or ``seconds`` pass."""
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    def mark_down(self) -> bool:
        """Stop using this backend; True when it was healthy until now."""
        if not self.healthy:
            return False
        self.healthy = False
        self.down.set()
        self.up.clear()
        return True

    def mark_up(self) -> None:
        """Use this backend again (it may have restarted: uploads are sent again)."""
        self.healthy = True
        self.down.clear()
        self.up.set()
        self.client.forget_uploads()
        self.wake.set()

    async def probe(self, limit: float) -> bool:
        """One ``/system_stats`` call bounded by ``limit`` seconds: is the server answering?"""
        try:
            async with asyncio.timeout(limit):
                self.system_stats = await self.client.system_stats()
        except (ComfyUIError, TimeoutError, OSError):
            return False
        return True


def _looks_like_emulator(stats: Mapping[str, Any]) -> bool:
    system = stats.get("system")
    if not isinstance(system, dict):
        return False
    return system.get("storycore_emulator") is True


async def read_node_and_model_lists(
    client: ComfyUIClient,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The server's ``/object_info`` and its model lists (an unknown folder lists nothing)."""
    object_info = await client.object_info() or {}
    models: dict[str, list[str]] = {}
    for folder in MODEL_FOLDERS:
        try:
            models[folder] = await client.models(folder)
        except ComfyUIError:
            models[folder] = []  # folder unknown to this server (its node pack is missing)
    return object_info, models


async def connect_backend(
    spec: BackendSpec, settings: Settings, *, mock: bool = False, probe_timeout: float = 5.0
) -> Backend:
    """Open a client and a tracker to ``spec`` and learn what the server offers.

    Raises a :class:`ComfyUIError` (unreachable, timeout, bad answer) when it cannot be used.
    """
    _log.debug("connecting to %s", spec.label)
    started = time.perf_counter()
    client = client_for(spec, settings)
    await client.open()
    tracker: PromptTracker | None = None
    try:
        try:
            async with asyncio.timeout(probe_timeout):
                stats = await client.system_stats()
        except TimeoutError:
            raise ServerTimeout(
                f"no answer to GET /system_stats within {probe_timeout:g} s",
                where=spec.url,
                hint="check that the server is running and not overloaded",
            ) from None
        object_info, models = await read_node_and_model_lists(client)
        tracker = PromptTracker(client, report_positions=False)
        await tracker.start()
    except BaseException as exc:
        if isinstance(exc, ComfyUIError):
            _log.debug("cannot use %s: %s", spec.label, exc.message)
        if tracker is not None:
            await tracker.close()
        await client.close()
        raise
    _log.debug(
        "connected to %s: ComfyUI %s, %d node classes (%.0f ms)",
        spec.label,
        stats.get("system", {}).get("comfyui_version", "?"),
        len(object_info),
        (time.perf_counter() - started) * 1000.0,
    )
    return Backend(
        spec=spec,
        client=client,
        tracker=tracker,
        mock=mock or _looks_like_emulator(stats),
        object_info=object_info,
        models=models,
        system_stats=stats,
        depth=settings.render.queue_depth,
    )


async def connect_all(
    specs: Iterable[BackendSpec], settings: Settings, probe_timeout: float
) -> tuple[list[Backend], list[tuple[BackendSpec, ComfyUIError]]]:
    """Connect to every spec at once; return the usable backends and why the others failed."""
    specs = list(specs)
    results = await asyncio.gather(
        *(connect_backend(s, settings, probe_timeout=probe_timeout) for s in specs),
        return_exceptions=True,
    )
    backends: list[Backend] = []
    failed: list[tuple[BackendSpec, ComfyUIError]] = []
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, Backend):
            backends.append(result)
        elif isinstance(result, ComfyUIError):
            failed.append((spec, result))
        elif isinstance(result, TimeoutError):  # the node or model lists took too long
            failed.append((spec, ServerTimeout("no answer in time", where=spec.url)))
        elif isinstance(result, BaseException):
            raise result
    return backends, failed


class MockServer:
    """The in-process emulator used when no ComfyUI is reachable (or with ``--mock``)."""

    def __init__(self, state_dir: Path, models: Mapping[str, Sequence[str]]) -> None:
        self.state_dir = state_dir
        self.models = {k: list(v) for k, v in models.items()}
        self._emulator: Any = None
        self.started_at = 0.0

    async def start(self) -> str:
        from storycore.emulator import Emulator, EmulatorOptions

        options = EmulatorOptions(
            output_dir=self.state_dir / "output",
            input_dir=self.state_dir / "input",
            temp_dir=self.state_dir / "temp",
            models=self.models,
            node_packs=("ipadapter_plus", "controlnet_aux"),
            mark_placeholders=True,
            profile="current",  # like `storycore comfyui start --mock` (today's ComfyUI)
        )
        self._emulator = Emulator(options)
        await self._emulator.start()
        self.started_at = time.monotonic()
        return str(self._emulator.url)

    async def stop(self) -> None:
        if self._emulator is not None:
            with contextlib.suppress(Exception):
                await self._emulator.stop()
            self._emulator = None


def required_models(
    graphs: Iterable[Mapping[str, Any]], object_info: Mapping[str, Any] | None = None
) -> dict[str, list[str]]:
    """Model file names the graphs use, by folder, read from well-known loader inputs."""
    inputs = {
        "ckpt_name": "checkpoints",
        "lora_name": "loras",
        "vae_name": "vae",
        "control_net_name": "controlnet",
        "clip_name": "clip_vision",
        "ipadapter_file": "ipadapter",
    }
    found: dict[str, set[str]] = {folder: set() for folder in MODEL_FOLDERS}
    for graph in graphs:
        for node in graph.values():
            if not isinstance(node, Mapping):
                continue
            for name, value in dict(node.get("inputs", {})).items():
                folder = inputs.get(name)
                if folder and isinstance(value, str):
                    found[folder].add(value)
    return {folder: sorted(names) for folder, names in found.items()}


def describe_unreachable(failed: Sequence[tuple[BackendSpec, ComfyUIError]]) -> str:
    """``url: why; url: why`` on one line (for a warning)."""
    return "; ".join(f"{spec.label}: {err.message.rstrip('.')}" for spec, err in failed)


def _with_hint(err: ComfyUIError) -> str:
    if err.hint and "comfyui." in err.hint:
        return f"{err.message.rstrip('.')} ({err.hint.rstrip('.')})"
    return err.message


def unreachable_error(
    failed: Sequence[tuple[BackendSpec, ComfyUIError]], *, named: bool, renders: bool = True
) -> NoServerReachable:
    """ "No ComfyUI reachable" (exit 4): one line for each URL tried and why. ``named``: the URLs
    came from ``--backend`` or the configured ``backends``; ``renders``: the command could
    render placeholders instead (``generate-images``), so the hint says how to ask for that."""
    # A server that answered but was refused by one of our limits keeps its own hint: it says
    # which setting to change, which the general hint below cannot.
    tried = [(spec.label, _with_hint(err)) for spec, err in failed]
    if named:
        hint = "check that each server runs and that its URL (and path prefix) is right"
    else:
        hint = "start ComfyUI (`storycore comfyui start`), or name a server with --backend URL"
    if renders:
        hint += "; --fallback mock (or --mock) renders placeholder frames instead"
    return NoServerReachable(tried, hint=hint)
