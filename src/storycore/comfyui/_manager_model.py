"""The manager's pure model: its options, ComfyUI's command line and environment, its results.

Only flags that ComfyUI 0.3.64 accepts are produced (see ``main_help.txt`` in the recordings).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

import platformdirs

from storycore.comfyui._health_core import DeviceInfo
from storycore.comfyui.install import preview_flags, server_url
from storycore.comfyui.process import TerminationReport
from storycore.errors import ConfigError

__all__ = [
    "ManagerOptions",
    "ServerKind",
    "ServerState",
    "ServerStatus",
    "StartAction",
    "StartResult",
    "StopAction",
    "StopResult",
    "VramMode",
    "default_state_dir",
    "describe_server",
    "desktop_port_allowed",
    "options_from_settings",
    "server_env",
    "server_flags",
]

VramMode = Literal["normal", "low", "none", "high"]
_VRAM_FLAGS: Mapping[str, str] = {"low": "--lowvram", "none": "--novram", "high": "--highvram"}
_OWNED_FLAGS = ("--listen", "--port", "--cpu", "--cuda-device", "--disable-auto-launch")


def default_state_dir(host: str, port: int) -> Path:
    """``<user state>/storycore/comfyui/<host>_<port>``."""
    return platformdirs.user_state_path("storycore") / "comfyui" / _state_name(host, port)


def _state_name(host: str, port: int) -> str:
    safe_host = host.replace(":", "_").replace("/", "_").replace("\\", "_") or "default"
    return f"{safe_host}_{port}"


@dataclass(frozen=True)
class ManagerOptions:
    """Everything the manager needs; the application maps its settings onto this."""

    install_path: Path | None = None
    python_executable: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8188
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 60.0
    health_interval: float = 5.0
    max_restarts: int = 3
    graceful_timeout: float = 30.0
    force_kill_timeout: float = 10.0
    gpu: bool = True
    cuda_device: int | None = None
    vram_mode: VramMode = "normal"
    reserve_vram_gb: float | None = None
    preview_method: str | None = None  # --preview-method unless extra_args has one
    state_dir: Path | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    detect_desktop: bool = True

    @property
    def state_folder(self) -> Path:
        return (
            self.state_dir
            if self.state_dir is not None
            else default_state_dir(self.host, self.port)
        )

    @property
    def url(self) -> str:
        return server_url(self.host, self.port)


class ComfyUISettingsLike(Protocol):
    """The ``comfyui`` settings section, as far as the manager reads it (no import of config)."""

    @property
    def install_path(self) -> Path | None: ...
    @property
    def python_executable(self) -> Path | None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def extra_args(self) -> tuple[str, ...]: ...
    @property
    def preview_method(self) -> str: ...
    @property
    def startup_timeout(self) -> float: ...
    @property
    def health_check_interval(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def graceful_shutdown(self) -> float: ...
    @property
    def force_kill(self) -> float: ...
    @property
    def gpu(self) -> bool: ...
    @property
    def cuda_device(self) -> int | None: ...
    @property
    def vram_mode(self) -> VramMode: ...
    @property
    def reserve_vram_gb(self) -> float | None: ...


class SettingsLike(Protocol):
    @property
    def comfyui(self) -> ComfyUISettingsLike: ...
    @property
    def state_dir(self) -> Path | None: ...


def options_from_settings(
    settings: SettingsLike,
    *,
    host: str | None = None,
    port: int | None = None,
    install_path: Path | None = None,
    cuda_device: int | None = None,
    detect_desktop: bool = True,
) -> ManagerOptions:
    """Map the application settings (``comfyui.*``, ``state_dir``) onto :class:`ManagerOptions`.

    ``host``/``port``/``install_path``/``cuda_device`` override the settings (one command's
    flags, or a managed backend pinned to a GPU). The state folder is
    ``<state_dir>/comfyui/<host>_<port>`` when ``state_dir`` is set, else the user state folder.
    """
    comfy = settings.comfyui
    final_host = host or comfy.host
    final_port = port or comfy.port
    root = settings.state_dir
    state = (
        root / "comfyui" / _state_name(final_host, final_port)
        if root is not None
        else default_state_dir(final_host, final_port)
    )
    return ManagerOptions(
        install_path=install_path or comfy.install_path,
        python_executable=comfy.python_executable,
        host=final_host,
        port=final_port,
        extra_args=tuple(comfy.extra_args),
        startup_timeout=comfy.startup_timeout,
        health_interval=comfy.health_check_interval,
        max_restarts=comfy.max_retries,
        graceful_timeout=comfy.graceful_shutdown,
        force_kill_timeout=comfy.force_kill,
        gpu=comfy.gpu,
        cuda_device=cuda_device if cuda_device is not None else comfy.cuda_device,
        vram_mode=comfy.vram_mode,
        reserve_vram_gb=comfy.reserve_vram_gb,
        preview_method=comfy.preview_method,
        state_dir=state,
        detect_desktop=detect_desktop,
    )


class SourcesLike(Protocol):
    def source_of(self, dotted: str) -> str: ...


def desktop_port_allowed(sources: SourcesLike) -> bool:
    """May ComfyUI Desktop's port be tried when nothing answers on ``comfyui.port``? Only when
    the user chose neither the port nor an install (they are the built-in defaults)."""
    chosen = ("comfyui.port", "comfyui.host", "comfyui.install_path", "comfyui.python_executable")
    return all(sources.source_of(name) == "default" for name in chosen)


def server_flags(options: ManagerOptions) -> list[str]:
    """ComfyUI command-line flags for ``options`` (only flags ComfyUI 0.3.64 accepts)."""
    for arg in options.extra_args:
        name = arg.split("=", 1)[0]
        if name in _OWNED_FLAGS:
            raise ConfigError(
                f"extra argument {name} is set by StoryCore itself",
                where="comfyui.extra_args",
                hint="Use the host, port, gpu and cuda_device settings instead",
            )
    flags = ["--listen", options.host, "--port", str(options.port)]
    if not options.gpu:
        flags.append("--cpu")
    else:
        if options.cuda_device is not None:
            flags += ["--cuda-device", str(options.cuda_device)]
        if options.vram_mode in _VRAM_FLAGS:
            flags.append(_VRAM_FLAGS[options.vram_mode])
        if options.reserve_vram_gb is not None:
            flags += ["--reserve-vram", f"{options.reserve_vram_gb:g}"]
    flags += list(options.extra_args)
    flags += preview_flags(options.preview_method, options.extra_args)
    flags.append("--disable-auto-launch")
    return flags


def server_env(options: ManagerOptions, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if not options.gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif options.cuda_device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(options.cuda_device)
    return env


StartAction = Literal["started", "adopted", "already-running", "desktop"]
StopAction = Literal["stopped", "not-running", "stale-cleaned", "not-managed"]


@dataclass(frozen=True)
class StartResult:
    action: StartAction
    url: str
    managed: bool
    message: str
    pid: int | None = None
    log_path: Path | None = None
    pidfile: Path | None = None
    command: tuple[str, ...] = ()
    comfyui_version: str | None = None
    elapsed: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopResult:
    action: StopAction
    url: str
    message: str
    pid: int | None = None
    log_path: Path | None = None
    report: TerminationReport | None = None
    notes: tuple[str, ...] = ()


class ServerState(StrEnum):
    """What ``status`` says about the server."""

    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    UNHEALTHY = "unhealthy"


ServerKind = Literal["comfyui", "desktop", "emulator"]


@dataclass(frozen=True)
class ServerStatus:
    """What ``comfyui status`` found. ``kind`` says what answers (None when nothing does):
    a ComfyUI, ComfyUI Desktop on its own port, or StoryCore's emulator (placeholders)."""

    state: ServerState
    url: str
    managed: bool
    message: str
    kind: ServerKind | None = None
    pid: int | None = None
    uptime_s: float | None = None
    comfyui_version: str | None = None
    devices: tuple[DeviceInfo, ...] = ()
    vram_total: int | None = None
    vram_free: int | None = None
    queue_remaining: int | None = None
    log_path: Path | None = None
    pidfile: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        """The LSB ``status`` exit code: 0 running, 3 stopped, 4 unknown (a process runs but
        ``/system_stats`` does not answer: starting, or unhealthy)."""
        return {ServerState.RUNNING: 0, ServerState.STOPPED: 3}.get(self.state, 4)


def describe_server(kind: ServerKind, version: str | None) -> str:
    """What runs, for people: ``StoryCore's emulator (placeholders)``, ``ComfyUI 0.3.64``."""
    if kind == "emulator":
        return "StoryCore's emulator (placeholders)"
    label = "ComfyUI Desktop" if kind == "desktop" else "ComfyUI"
    return f"{label} {version or ''}".rstrip()
