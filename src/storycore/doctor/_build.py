"""Build the doctor's report: settings, platform, install, server, models, project, problems.

An adapter: it reads files, runs short tools and makes bounded HTTP calls, but never prints.
Every section is checked on its own, so one failure becomes a problem in the report instead of
stopping the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil

from storycore._config_text import mask_url
from storycore._redact import redact
from storycore.config import ResolvedSettings, Settings, resolve_settings
from storycore.diagnostics import LOADER_INPUT_FOLDERS, DiagnosticHistory
from storycore.doctor._problems import platform_problems, project_problems, server_problems
from storycore.doctor._report import (
    DoctorReport,
    InstallCheck,
    Problem,
    ProjectCheck,
    ServerCheck,
)
from storycore.errors import ComfyUIError, ConfigError, StoryCoreError
from storycore.platform import (
    GPUInfo,
    ModelInventory,
    choose_launch_flags,
    detect_gpus_async,
    detect_os,
    port_holder_async,
    recommend_panels,
    scan_models_async,
)

if TYPE_CHECKING:
    from storycore.engine import BackendSpec

__all__ = ["build_report", "probe_capabilities"]

GIB = 1024**3
LOW_DISK_BYTES = 5 * GIB
RECENT_DIAGNOSES = 5


async def build_report(
    *,
    project_dir: Path | None = None,
    url: str | None = None,
    resolved: ResolvedSettings | None = None,
    probe_timeout: float = 5.0,
) -> DoctorReport:
    """Check everything ``storycore doctor`` reports. Every wait is bounded by ``probe_timeout``
    (the server probe) or the tools' own timeouts."""
    problems: list[Problem] = []
    settings, rows, resolved = await _settings(project_dir, resolved, problems)
    cs = settings.comfyui
    os_info = await asyncio.to_thread(detect_os)
    gpus = await detect_gpus_async(os_info, tool_timeout=probe_timeout)
    launch = choose_launch_flags(
        os_info,
        gpus,
        use_gpu=cs.gpu,
        cuda_device=cs.cuda_device,
        vram_mode=cs.vram_mode,
        reserve_vram_gb=cs.reserve_vram_gb,
    )
    install, models_dir, extra_yaml = await _install(settings)
    inventory: ModelInventory | None = None
    if models_dir is not None or extra_yaml is not None:
        try:
            inventory = await scan_models_async(models_dir, extra_paths_yaml=extra_yaml)
        except ConfigError as exc:
            problems.append(Problem("error", "extra_model_paths", exc.paragraph(), exc.hint or ""))
    server = await _find_server(settings, resolved, url, probe_timeout)
    project: ProjectCheck | None = None
    if project_dir is not None:
        project = await _project(project_dir, settings, server, inventory, launch.device)
        if not server.complete and install.models_dir is not None:
            custom = Path(install.models_dir).parent / "custom_nodes"
            project.nodes_missing = await asyncio.to_thread(_packs_absent, project, custom)
    problems += platform_problems(gpus, launch.device, server)
    problems += server_problems(server, install)
    if project is not None:
        problems += project_problems(project, server, inventory)
    problems += await _disk_problems(project_dir or Path.cwd())
    recent: list[dict[str, Any]] = []
    if project_dir is not None:
        history = DiagnosticHistory.for_project(project_dir, maxlen=RECENT_DIAGNOSES)
        recent = [d.to_dict() for d in await asyncio.to_thread(history.load)]
    return DoctorReport(
        settings=rows,
        os=os_info,
        gpus=gpus,
        launch=launch,
        install=install,
        server=server,
        inventory=inventory,
        project=project,
        problems=problems,
        recent_diagnoses=recent,
    )


async def _settings(
    project_dir: Path | None, resolved: ResolvedSettings | None, problems: list[Problem]
) -> tuple[Settings, list[tuple[str, Any, str]], ResolvedSettings | None]:
    if resolved is None:
        try:
            resolved = await asyncio.to_thread(resolve_settings, project_dir=project_dir)
        except ConfigError as exc:
            problems.append(
                Problem("error", "settings", exc.paragraph(), exc.hint or "fix the setting")
            )
            return Settings(), [], None
    return resolved.settings, resolved.explain(), resolved


async def _install(settings: Settings) -> tuple[InstallCheck, Path | None, Path | None]:
    from storycore.comfyui.install import find_install

    cs = settings.comfyui
    check = InstallCheck(path=str(cs.install_path), found=False)
    try:
        install = await asyncio.to_thread(find_install, cs.install_path, cs.python_executable)
    except StoryCoreError as exc:
        check.error = exc.paragraph()
        return check, None, None
    models_dir = install.cwd / "models"
    extra = install.cwd / "extra_model_paths.yaml"
    check.found, check.kind, check.root = True, install.kind, str(install.root)
    check.models_dir = str(models_dir)
    has_extra = await asyncio.to_thread(extra.is_file)
    check.extra_model_paths = str(extra) if has_extra else None
    return check, models_dir, extra if has_extra else None


async def _find_server(
    settings: Settings, resolved: ResolvedSettings | None, url: str | None, probe_timeout: float
) -> ServerCheck:
    """The first server that answers every request, as ``generate-images`` would find it:
    ``url`` (``--backend``), else the configured backends, else ``comfyui.host:port`` and then
    ComfyUI Desktop's port (when the user chose no port). Each one tried before is listed with
    why it was passed over. When none does: the first that answered but failed a request
    (generate-images would not use it either), else the first, with every URL tried and why."""
    from storycore.engine import backend_specs, desktop_port_for, desktop_spec

    urls = [url] if url else []
    specs = backend_specs(settings, urls)
    desktop = desktop_spec(settings, desktop_port_for(resolved, urls)) if resolved else None
    if desktop is not None:
        specs.append(desktop)
    tried: list[dict[str, str]] = []
    first: ServerCheck | None = None
    answered: ServerCheck | None = None  # the first that answered, then failed a request
    for spec in specs:
        check = await _probe(spec, settings, probe_timeout)
        check.desktop = spec.desktop
        if check.complete:
            check.tried = tried
            return check
        check.tried = list(tried)  # those before it (all of them, for one that never answered)
        tried.append({"url": mask_url(spec.label), "why": check.error or "no answer"})
        if not check.reachable:
            check.tried = tried
        answered = answered or (check if check.reachable else None)
        first = first or check
    assert first is not None  # backend_specs always gives one
    return answered or first


async def _probe(spec: BackendSpec, settings: Settings, probe_timeout: float) -> ServerCheck:
    """Ask one server what it is, its node list and its models, as generate-images would (the
    settings' credentials, request deadline and size limits; connect and read within
    ``probe_timeout``), all of it within ``4 * probe_timeout``. A server that answers
    ``/system_stats`` is reachable; when a later request fails, :attr:`ServerCheck.failed`
    names it and :attr:`ServerCheck.error` says why."""
    from storycore.engine import client_for, client_timeouts

    url = spec.url
    check = ServerCheck(url=mask_url(url), reachable=False)
    started = time.perf_counter()
    timeouts = replace(client_timeouts(settings), connect=probe_timeout, read=probe_timeout)
    limit = probe_timeout * 4
    step = "GET /system_stats"
    try:
        async with (
            asyncio.timeout(limit),
            client_for(spec, settings, timeouts=timeouts) as client,
        ):
            stats = await client.system_stats()
            check.elapsed_ms = (time.perf_counter() - started) * 1000.0
            check.reachable = True
            system = stats.get("system") if isinstance(stats.get("system"), dict) else {}
            assert isinstance(system, dict)
            # Server text is shown and stored as data: a credential it echoes is masked.
            check.version = _str(system.get("comfyui_version"))
            check.python = _str(system.get("python_version"))
            check.pytorch = _str(system.get("pytorch_version"))
            check.argv = [redact(str(a)) for a in system.get("argv") or []]
            check.emulator = system.get("storycore_emulator") is True
            devices = [d for d in stats.get("devices") or [] if isinstance(d, dict)]
            check.devices = [_redacted(d) for d in devices]
            step = "GET /features and /api/jobs"
            check.capabilities = (await client.capabilities()).to_dict()
            step = "GET /object_info"
            info = await client.object_info() or {}
            check.node_classes, check.classes = len(info), sorted(info)
            step = "GET /models"
            models: dict[str, list[str]] = {}
            for folder in await client.models():
                if folder in LOADER_FOLDERS:
                    step = f"GET /models/{folder}"
                    models[folder] = [redact(n) for n in await client.models(folder)]
            check.models = models
    except (ComfyUIError, TimeoutError) as exc:
        if isinstance(exc, ComfyUIError):
            why, check.hint = exc.message, exc.hint
        else:
            why = f"no complete answer to {step} within {limit:g} s"
        if check.reachable:  # it answered as ComfyUI, then failed: the check failed all the same
            check.failed = step
            route = step.split(" ", 1)[1]
            check.error = why if route in why else f"{step}: {why}"
        else:
            check.error = why
        host = urlsplit(url).hostname or ""
        if not check.reachable and host in ("127.0.0.1", "localhost", "::1"):
            port = urlsplit(url).port or 80
            check.port_holder = await port_holder_async(port)
    return check


async def probe_capabilities(
    url: str, settings: Settings, probe_timeout: float = 5.0
) -> dict[str, Any] | None:
    """What the server at ``url`` can do (``ServerCapabilities.to_dict()``: version, jobs API,
    feature flags, devices), asked as generate-images would (the settings' credentials and
    limits) within ``4 * probe_timeout``; ``None`` when it does not answer."""
    from storycore.engine import backend_specs, client_for, client_timeouts

    spec = backend_specs(settings, [url])[0]
    timeouts = replace(client_timeouts(settings), connect=probe_timeout, read=probe_timeout)
    try:
        async with (
            asyncio.timeout(probe_timeout * 4),
            client_for(spec, settings, timeouts=timeouts) as client,
        ):
            return (await client.capabilities()).to_dict()
    except (ComfyUIError, TimeoutError):
        return None


LOADER_FOLDERS = frozenset({*LOADER_INPUT_FOLDERS.values(), "clip_vision"})


def _str(value: Any) -> str | None:
    return None if value is None else redact(str(value))


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` (a server's JSON) with every remembered credential masked in its strings; what
    lies deeper than a device record ever does is dropped."""
    if isinstance(value, str):
        return redact(value)
    if depth > 8 and isinstance(value, dict | list):
        return "(nested too deeply)"
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, depth + 1) for v in value]
    return value


def _classes(server: ServerCheck) -> set[str] | None:
    return set(server.classes) if server.complete and server.classes else None


def _graph_needs(graph: Mapping[str, Any], needs: dict[str, set[str]], classes: set[str]) -> None:
    for node in graph.values():
        if not isinstance(node, Mapping):
            continue
        class_type = str(node.get("class_type", ""))
        classes.add(class_type)
        for name, value in dict(node.get("inputs") or {}).items():
            folder = LOADER_INPUT_FOLDERS.get(name)
            if name == "clip_name" and "CLIPVision" in class_type:
                folder = "clip_vision"
            if folder is not None and isinstance(value, str):
                needs.setdefault(folder, set()).add(value)


async def _project(
    project_dir: Path,
    settings: Settings,
    server: ServerCheck,
    inventory: ModelInventory | None,
    gpu: GPUInfo | None,
) -> ProjectCheck:
    from storycore.assets import asset_stats
    from storycore.engine import graph_options
    from storycore.panels import panels_from_project
    from storycore.project import load_project
    from storycore.workflows import build_panel_graph, pack_for_class

    check = ProjectCheck(path=str(project_dir))
    try:
        project = await asyncio.to_thread(load_project, project_dir)
        # follows the links of reference images (a few lstat calls each): in a worker thread
        panels = await asyncio.to_thread(panels_from_project, project, settings)
        options = graph_options(settings)
    except StoryCoreError as exc:
        check.error = exc.paragraph()
        return check
    check.panels = len(panels)
    stats = await asyncio.to_thread(asset_stats, project)
    check.storage = {
        kind: {"count": totals.count, "bytes": totals.bytes}
        for kind, totals in [*stats.per_kind.items(), ("unknown", stats.unknown)]
    }
    offered = _classes(server)
    needs: dict[str, set[str]] = {}
    classes: set[str] = set()
    for panel in panels:
        try:
            built = build_panel_graph(panel, options, node_classes=offered)
        except StoryCoreError as exc:
            check.error = (check.error + " " if check.error else "") + exc.paragraph()
            continue
        _graph_needs(built.graph, needs, classes)
    check.models_needed = {folder: sorted(names) for folder, names in sorted(needs.items())}
    if server.complete:
        available = server.models
        check.checked_against = f"server {server.url}"
    else:
        available = inventory.as_names() if inventory is not None else {}
        check.checked_against = "local models folder" if inventory is not None else "nothing"
    for folder, names in check.models_needed.items():
        missing = [n for n in names if n not in set(available.get(folder, []))]
        if missing:
            check.models_missing[folder] = missing
    for class_type in sorted(classes):
        pack = pack_for_class(class_type)
        if pack is not None:
            check.nodes_needed[class_type] = pack[0]
        if offered is not None and class_type not in offered:
            check.nodes_missing.append(class_type)
    check.advice = _advice(panels, settings, inventory, gpu)
    return check


def _packs_absent(project: ProjectCheck, custom_nodes: Path) -> list[str]:
    """Without a server: the needed classes whose pack has no folder in ``custom_nodes``."""
    try:
        present = {p.name.lower() for p in custom_nodes.iterdir() if p.is_dir()}
    except OSError:
        present = set()
    return sorted(c for c, pack in project.nodes_needed.items() if pack.lower() not in present)


def _advice(
    panels: Any, settings: Settings, inventory: ModelInventory | None, gpu: GPUInfo | None
) -> list[Any]:
    if inventory is None or not panels:
        return []
    checkpoint = inventory.find("checkpoints", panels[0].checkpoint)
    if checkpoint is None or checkpoint.family == "unknown":
        return []
    return recommend_panels(
        panels,
        family=checkpoint.family,
        model_bytes=checkpoint.size,
        gpu=gpu,
        ram_bytes=int(psutil.virtual_memory().total),
    )


async def _disk_problems(folder: Path) -> list[Problem]:
    try:
        usage = await asyncio.to_thread(psutil.disk_usage, str(folder))
    except OSError:
        return []
    if usage.free >= LOW_DISK_BYTES:
        return []
    return [
        Problem(
            "warning",
            "low_disk",
            f"only {usage.free / GIB:.1f} GiB free at {folder}",
            "free space: renders and downloaded models need several GiB",
        )
    ]
