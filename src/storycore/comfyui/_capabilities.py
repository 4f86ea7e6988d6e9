"""What one ComfyUI server can do, detected once per client and kept on it.

Two generations are told apart by what they answer, never by a version number alone:

* ComfyUI 0.3.64 (the recordings in tests/data/comfyui-reference): ``/system_stats`` with one
  device, ``/features`` with two flags, no ``/api/jobs``; prompts are followed and settled
  through ``/queue`` and ``/history`` (in memory, capped, gone after a restart).
* today's ComfyUI (server.py @ 5e14d797): ``GET /api/jobs`` (list, filters, pagination),
  ``GET /api/jobs/{id}`` (one job from the queue or the history, with outputs and error) and
  ``POST /api/jobs/{id}/cancel``; ``/system_stats`` lists every torch device and adds
  ``deploy_environment`` and ``comfy_package_versions``; ``/features`` more flags
  (comfy_api/feature_flags.py @ 1924b05e: ``supports_model_type_tags``, ``node_replacements``,
  ``assets``, ``extension.manager.supports_v4``, ...).

Every probe is bounded (the client's request deadline and size limits) and failure-tolerant: a
404, a refusal or an answer of the wrong shape means "not there", noted in
:attr:`ServerCapabilities.notes`; only a server that cannot be reached at all raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from storycore._redact import redact
from storycore.errors import ComfyUIError, ServerTimeout, ServerUnreachable

if TYPE_CHECKING:
    from storycore.comfyui.client import ComfyUIClient

__all__ = [
    "DeviceInfo",
    "ServerCapabilities",
    "SystemInfo",
    "detect_capabilities",
    "parse_features",
    "parse_system_stats",
    "probe_jobs_api",
]

_MAX_ITEMS = 64  # devices, packages, feature flags
_MAX_TEXT = 200
_MAX_FLAG_DEPTH = 3


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return redact(str(value))[:_MAX_TEXT]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- /system_stats
@dataclass(frozen=True)
class DeviceInfo:
    """One torch device of ``/system_stats`` ``devices[]`` (VRAM in bytes)."""

    name: str
    type: str
    index: int | None = None
    vram_total: int | None = None
    vram_free: int | None = None


@dataclass(frozen=True)
class SystemInfo:
    """What ``/system_stats`` says about a server, from either generation."""

    version: str | None = None
    os: str | None = None
    python: str | None = None
    pytorch: str | None = None
    deploy_environment: str | None = None
    # (name, installed, required) of every comfy* package (today's servers only)
    package_versions: tuple[tuple[str, str | None, str | None], ...] = ()
    devices: tuple[DeviceInfo, ...] = ()

    @property
    def gpus(self) -> tuple[DeviceInfo, ...]:
        return tuple(d for d in self.devices if d.type != "cpu")


def parse_system_stats(body: Any) -> SystemInfo:
    """A :class:`SystemInfo` from a ``/system_stats`` body (server.py @ 5e14d797: ``devices``
    holds every torch device, the primary one first; ``deploy_environment`` is a string,
    ``comfy_package_versions`` a list of ``{name, installed, required}``). Odd shapes give
    empty fields; at most 64 devices and packages are kept."""
    body = body if isinstance(body, Mapping) else {}
    raw_system = body.get("system")
    system: Mapping[str, Any] = raw_system if isinstance(raw_system, Mapping) else {}
    raw_devices = body.get("devices")
    devices = tuple(
        DeviceInfo(
            name=_text(d.get("name")) or "?",
            type=_text(d.get("type")) or "?",
            index=_count(d.get("index")),
            vram_total=_count(d.get("vram_total")),
            vram_free=_count(d.get("vram_free")),
        )
        for d in (raw_devices[:_MAX_ITEMS] if isinstance(raw_devices, list) else [])
        if isinstance(d, Mapping)
    )
    raw_packages = system.get("comfy_package_versions")
    packages = tuple(
        (_text(p.get("name")) or "?", _text(p.get("installed")), _text(p.get("required")))
        for p in (raw_packages[:_MAX_ITEMS] if isinstance(raw_packages, list) else [])
        if isinstance(p, Mapping)
    )
    return SystemInfo(
        version=_text(system.get("comfyui_version")),
        os=_text(system.get("os")),
        python=_text(system.get("python_version")),
        pytorch=_text(system.get("pytorch_version")),
        deploy_environment=_text(system.get("deploy_environment")),
        package_versions=packages,
        devices=devices,
    )


# ---------------------------------------------------------------- /features
def _flag_value(value: Any, depth: int) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping) and depth < _MAX_FLAG_DEPTH:
        return {
            str(k)[:_MAX_TEXT]: _flag_value(v, depth + 1)
            for k, v in list(value.items())[:_MAX_ITEMS]
        }
    return "(not shown)"


def parse_features(body: Any) -> Mapping[str, Any]:
    """The server's feature flags (``GET /features``), bounded: at most 64 flags, nested at
    most three levels, strings cut; a list or deeper value shows as ``"(not shown)"``."""
    if not isinstance(body, Mapping):
        return MappingProxyType({})
    flags = _flag_value(body, 0)
    return MappingProxyType(flags if isinstance(flags, dict) else {})


# ---------------------------------------------------------------- the capabilities
@dataclass(frozen=True)
class ServerCapabilities:
    """What one server can do. ``generation`` is ``"current"`` where ``/api/jobs`` answers,
    else ``"0.3.64"`` (everything falls back to what that release does)."""

    system: SystemInfo = field(default_factory=SystemInfo)
    jobs_api: bool = False
    features: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    notes: tuple[str, ...] = ()  # why a probe said "not there"

    @property
    def version(self) -> str | None:
        return self.system.version

    @property
    def generation(self) -> str:
        return "current" if self.jobs_api else "0.3.64"

    def feature(self, name: str, default: Any = None) -> Any:
        return self.features.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "generation": self.generation,
            "jobs_api": self.jobs_api,
            "features": dict(self.features),
            "deploy_environment": self.system.deploy_environment,
            "package_versions": [
                {"name": n, "installed": i, "required": r}
                for n, i, r in self.system.package_versions
            ],
            "devices": [
                {
                    "name": d.name,
                    "type": d.type,
                    "index": d.index,
                    "vram_total": d.vram_total,
                    "vram_free": d.vram_free,
                }
                for d in self.system.devices
            ],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line: version, generation, jobs API, GPUs."""
        gpus = self.system.gpus
        gpu_text = ", ".join(d.name for d in gpus[:4]) + (" ..." if len(gpus) > 4 else "")
        return (
            f"ComfyUI {self.version or '(version unknown)'}, {self.generation} API; "
            f"jobs API: {'yes' if self.jobs_api else 'no (using /queue and /history)'}; "
            f"GPUs: {len(gpus)}" + (f" ({gpu_text})" if gpus else "")
        )


def _why(route: str, err: BaseException) -> str:
    message = err.message if isinstance(err, ComfyUIError) else type(err).__name__
    return f"{route}: {message}"


async def _probe_system(client: ComfyUIClient, notes: list[str]) -> SystemInfo:
    try:
        return parse_system_stats(await client.system_stats())
    except (ServerUnreachable, ServerTimeout):
        raise  # nothing answers: no capabilities to know (and none cached)
    except ComfyUIError as err:
        notes.append(_why("/system_stats", err))
        return SystemInfo()


async def _probe_features(client: ComfyUIClient, notes: list[str]) -> Mapping[str, Any]:
    try:
        body = await client._json("GET", "/features")
    except ComfyUIError as err:
        notes.append(_why("/features", err))
        return MappingProxyType({})
    if not isinstance(body, Mapping):
        notes.append("/features: not a JSON object")
    return parse_features(body)


async def probe_jobs_api(client: ComfyUIClient, notes: list[str]) -> bool:
    """``GET /api/jobs?limit=1`` answers ``{"jobs": [...], "pagination": {...}}`` on today's
    servers (server.py @ 5e14d797, get_jobs); 0.3.64 has no such route (404)."""
    try:
        body = await client._json("GET", "/api/jobs", params={"limit": "1"})
    except ComfyUIError as err:
        notes.append(_why("/api/jobs", err))
        return False
    if (
        isinstance(body, Mapping)
        and isinstance(body.get("jobs"), list)
        and isinstance(body.get("pagination"), Mapping)
    ):
        return True
    notes.append("/api/jobs: not the jobs list of today's ComfyUI")
    return False


async def detect_capabilities(client: ComfyUIClient) -> ServerCapabilities:
    """Probe ``/system_stats``, then ``/features`` and ``/api/jobs`` at once; see the module."""
    notes: list[str] = []
    system = await _probe_system(client, notes)
    features, jobs = await asyncio.gather(
        _probe_features(client, notes), probe_jobs_api(client, notes)
    )
    return ServerCapabilities(
        system=system, jobs_api=jobs, features=features, notes=tuple(sorted(notes))
    )
