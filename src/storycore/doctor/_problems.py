"""The doctor's findings turned into problems, each with its fix (pure: reads only the checks).

A problem is an ``error`` (rendering cannot work until it is fixed), a ``warning`` (it will
work badly) or ``info`` (worth knowing).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from storycore.doctor._report import InstallCheck, Problem, ProjectCheck, ServerCheck
from storycore.platform import GPUInfo, ModelInventory

__all__ = ["TESTED_VERSION", "platform_problems", "project_problems", "server_problems"]

TESTED_VERSION = "0.3.64"


def platform_problems(
    gpus: list[GPUInfo], device: GPUInfo | None, server: ServerCheck
) -> list[Problem]:
    problems: list[Problem] = []
    if not gpus:
        problems.append(
            Problem(
                "warning",
                "no_gpu",
                "no GPU was found: a local ComfyUI runs on the CPU (--cpu), minutes per panel",
                "install the GPU driver (nvidia-smi must work), or render on a remote server "
                "with --backend URL",
            )
        )
    for gpu in gpus:
        if gpu.vendor == "nvidia" and gpu.source == "sysfs":
            problems.append(
                Problem(
                    "warning",
                    "nvidia_driver",
                    "an NVIDIA GPU is present but nvidia-smi does not work",
                    "install or repair the NVIDIA driver, then check that `nvidia-smi` runs",
                )
            )
    local = (urlsplit(server.url).hostname or "") in ("127.0.0.1", "localhost", "::1")
    on_cpu = bool(server.devices) and all(d.get("type") == "cpu" for d in server.devices)
    if server.reachable and local and device is not None and on_cpu:
        problems.append(
            Problem(
                "warning",
                "server_on_cpu",
                f"the local ComfyUI runs on the CPU although {device.name} is present",
                "restart it without --cpu, with a PyTorch build for your GPU "
                "(`storycore comfyui start` picks the flags)",
            )
        )
    return problems


def server_problems(server: ServerCheck, install: InstallCheck) -> list[Problem]:
    problems: list[Problem] = []
    if server.reachable:
        if server.error is not None:
            what = "its node list" if server.failed == "GET /object_info" else "its model lists"
            problems.append(
                Problem(
                    "error",
                    "server_incomplete",
                    f"{server.url} answers, but not with {what} ({server.failed}): {server.error}",
                    server.hint
                    or "look at the server's log (a node pack that fails to load can break "
                    "/object_info), restart it and run doctor again",
                )
            )
        if server.version and server.version != TESTED_VERSION:
            problems.append(
                Problem(
                    "info",
                    "version",
                    f"ComfyUI {server.version} answers; StoryCore was checked against "
                    f"{TESTED_VERSION}"
                    + (
                        " and against today's ComfyUI source (its jobs API is used)"
                        if (server.capabilities or {}).get("jobs_api")
                        else ""
                    ),
                    "if rendering misbehaves, compare with ComfyUI " + TESTED_VERSION,
                )
            )
        problems.extend(_capability_problems(server))
        if server.desktop:
            problems.append(
                Problem(
                    "info",
                    "desktop",
                    f"nothing answers at {server.tried[0]['url']}; ComfyUI Desktop answers at "
                    f"{server.url} and is used (generate-images and preflight use it too)",
                    "set comfyui.port to choose the server yourself",
                )
            )
        if server.emulator:
            problems.append(
                Problem(
                    "warning",
                    "emulator",
                    f"{server.url} is StoryCore's emulator: it renders placeholder frames",
                    "start a real ComfyUI to render the board",
                )
            )
        return problems
    port = urlsplit(server.url).port
    if server.port_holder is not None:
        pid, name = server.port_holder
        problems.append(
            Problem(
                "error",
                "port_in_use",
                f"port {port} is held by pid {pid} (`{name}`), which does not answer like ComfyUI",
                "stop that program, or choose another port (comfyui.port or --backend URL)",
            )
        )
    elif install.found:
        problems.append(
            Problem(
                "warning",
                "server_down",
                f"ComfyUI is not running at {', '.join(t['url'] for t in server.tried)}",
                "`storycore comfyui start` starts the installed one",
            )
        )
    else:
        problems.append(
            Problem(
                "error",
                "no_comfyui",
                f"no ComfyUI answers at {', '.join(t['url'] for t in server.tried)} and none "
                f"is installed at {install.path}",
                "start ComfyUI and pass --backend URL, or set comfyui.install_path to its "
                "folder; `generate-images --fallback mock` renders placeholder frames",
            )
        )
    return problems


def _capability_problems(server: ServerCheck) -> list[Problem]:
    """What the capabilities say: a server without the jobs API (0.3.64 and older), and a comfy*
    package whose installed version is not the one its requirements pin."""
    caps = server.capabilities
    if caps is None or server.emulator:
        return []
    problems: list[Problem] = []
    if not caps.get("jobs_api"):
        problems.append(
            Problem(
                "info",
                "no_jobs_api",
                f"ComfyUI {server.version or '(version unknown)'} at {server.url} has no jobs API "
                "(/api/jobs): prompts are followed through /queue and /history, which a restart "
                "of the server empties, so prompts in flight then render again",
                "update ComfyUI to a release with /api/jobs",
            )
        )
    for package in caps.get("package_versions") or []:
        installed, required = package.get("installed"), package.get("required")
        if required and installed != required:
            problems.append(
                Problem(
                    "info",
                    "comfy_package_version",
                    f"{package.get('name')} {installed or 'is not installed'}"
                    + (f", the server's requirements pin {required}" if installed else ""),
                    f"in ComfyUI's Python: pip install {package.get('name')}=={required}",
                )
            )
    return problems


def project_problems(
    project: ProjectCheck, server: ServerCheck, inventory: ModelInventory | None
) -> list[Problem]:
    problems: list[Problem] = []
    if project.error:
        problems.append(
            Problem("error", "project", project.error, "fix the project files named above")
        )
    if project.checked_against != "nothing":
        for folder, names in project.models_missing.items():
            if server.complete:
                have = server.models.get(folder, [])
            else:
                have = inventory.names(folder) if inventory is not None else []
            installed = ", ".join(f"`{n}`" for n in have[:8]) or "nothing"
            for name in names:
                problems.append(
                    Problem(
                        "error",
                        "model_missing",
                        f"{folder.rstrip('s')} `{name}` is needed by the project but not "
                        f"installed ({project.checked_against})",
                        f"put it in models/{folder}, or pick one of the installed: {installed}",
                    )
                )
    offered_by = "the server does not offer it" if server.complete else "its pack is not installed"
    for class_type in project.nodes_missing:
        pack = project.nodes_needed.get(class_type)
        problems.append(
            Problem(
                "error",
                "custom_node_missing",
                f"the node `{class_type}` is needed but {offered_by}",
                f"install the custom node pack {pack} and restart ComfyUI"
                if pack
                else "install the custom node pack that provides it and restart ComfyUI",
            )
        )
    for advice in project.advice:
        for note in advice.notes:
            problems.append(
                Problem(
                    "warning" if advice.fit.verdict == "too_big" else "info",
                    "panel_advice",
                    f"shot {advice.panel_id}: {note}",
                    f"use {advice.suggested_width}x{advice.suggested_height}, "
                    f"{advice.suggested_steps} steps",
                )
            )
    return problems
