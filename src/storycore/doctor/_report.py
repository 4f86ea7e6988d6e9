"""The doctor's report: plain data, JSON-friendly, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from storycore.platform import GPUInfo, LaunchPlan, ModelInventory, OSInfo, PanelAdvice

__all__ = ["DoctorReport", "InstallCheck", "Problem", "ProjectCheck", "ServerCheck"]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Problem:
    """Something wrong (``error``), risky (``warning``) or worth knowing (``info``), and the fix."""

    severity: Severity
    code: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InstallCheck:
    path: str
    found: bool
    kind: str | None = None
    root: str | None = None
    models_dir: str | None = None
    extra_model_paths: str | None = None
    error: str | None = None


@dataclass
class ServerCheck:
    url: str
    reachable: bool
    elapsed_ms: float | None = None
    version: str | None = None
    python: str | None = None
    pytorch: str | None = None
    argv: list[str] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    node_classes: int | None = None
    models: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    port_holder: tuple[int, str] | None = None
    classes: list[str] = field(default_factory=list, repr=False)  # not in to_dict: 500 names
    # every URL tried before this one answered (or all of them, when none did): url, why
    tried: list[dict[str, str]] = field(default_factory=list)
    desktop: bool = False  # ComfyUI Desktop's port, used because comfyui.port did not answer
    emulator: bool = False  # StoryCore's emulator (placeholder frames)
    # the request that failed after the server answered /system_stats ("GET /object_info"):
    # reachable, but its node or model lists are unknown, so the check failed all the same
    failed: str | None = None
    hint: str | None = None  # what to do about ``error``, when the client said
    # ServerCapabilities.to_dict(): version, generation, jobs API, feature flags, devices
    capabilities: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """It answered every request: its node classes and model lists are known."""
        return self.reachable and self.error is None


@dataclass
class ProjectCheck:
    path: str
    panels: int = 0
    models_needed: dict[str, list[str]] = field(default_factory=dict)
    models_missing: dict[str, list[str]] = field(default_factory=dict)
    nodes_needed: dict[str, str] = field(default_factory=dict)  # class -> pack
    nodes_missing: list[str] = field(default_factory=list)
    checked_against: str = "local models folder"
    advice: list[PanelAdvice] = field(default_factory=list)
    error: str | None = None
    # storage: kind (final / placeholder / temporary / unknown) -> {"count", "bytes"}
    storage: dict[str, dict[str, int]] = field(default_factory=dict)


def _gpu_dict(gpu: GPUInfo) -> dict[str, Any]:
    return asdict(gpu)


@dataclass
class DoctorReport:
    """Everything ``storycore doctor`` found. ``ok`` when no problem is an error."""

    settings: list[tuple[str, Any, str]]
    os: OSInfo
    gpus: list[GPUInfo]
    launch: LaunchPlan
    install: InstallCheck
    server: ServerCheck
    inventory: ModelInventory | None
    project: ProjectCheck | None
    problems: list[Problem] = field(default_factory=list)
    recent_diagnoses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        inventory: dict[str, Any] | None = None
        if self.inventory is not None:
            inventory = {
                folder: [
                    {
                        "name": f.name,
                        "size": f.size,
                        "kind": f.kind,
                        "family": f.family,
                        "path": str(f.path),
                        **({"error": f.error} if f.error else {}),
                    }
                    for f in files
                ]
                for folder, files in self.inventory.files.items()
            }
        project: dict[str, Any] | None = None
        if self.project is not None:
            project = asdict(self.project)
            project["advice"] = [
                {**asdict(a), "fit": asdict(a.fit), "ok": a.ok} for a in self.project.advice
            ]
        return {
            "ok": self.ok,
            "settings": [
                {"name": name, "value": _plain(value), "source": source}
                for name, value, source in self.settings
            ],
            "platform": {**asdict(self.os), "label": self.os.label},
            "gpus": [_gpu_dict(g) for g in self.gpus],
            "launch_flags": list(self.launch.flags),
            "launch_reasons": list(self.launch.reasons),
            "install": asdict(self.install),
            "server": {k: v for k, v in asdict(self.server).items() if k != "classes"},
            "models": inventory,
            "project": project,
            "problems": [p.to_dict() for p in self.problems],
            "recent_diagnoses": self.recent_diagnoses,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return value
