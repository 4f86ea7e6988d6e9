"""Which operating system we run on, and whether inside WSL or a container.

:func:`detect_os` reads a few well-known files (``/proc/version``, ``/.dockerenv``,
``/proc/1/cgroup``); ``root`` lets tests point it at a fake file-system root.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OSInfo", "detect_os"]


@dataclass(frozen=True)
class OSInfo:
    """``system`` is one of ``windows``, ``linux``, ``macos`` or ``other``."""

    system: str
    release: str
    machine: str
    python: str
    wsl: bool = False
    docker: bool = False

    @property
    def label(self) -> str:
        """A human name: ``Linux (WSL)``, ``macOS (arm64)``, ``Linux (Docker)``..."""
        names = {"windows": "Windows", "linux": "Linux", "macos": "macOS"}
        extras = [x for x, on in (("WSL", self.wsl), ("Docker", self.docker)) if on]
        extras.append(self.machine)
        return f"{names.get(self.system, self.system)} {self.release} ({', '.join(extras)})"

    @property
    def apple_silicon(self) -> bool:
        return self.system == "macos" and self.machine in ("arm64", "aarch64")


def _read(path: Path, limit: int = 65536) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def detect_os(
    *, root: Path = Path("/"), sys_platform: str | None = None, machine: str | None = None
) -> OSInfo:
    """Detect the OS; WSL from ``/proc/version`` or ``WSL_DISTRO_NAME``; Docker from
    ``/.dockerenv`` or the cgroup of pid 1."""
    plat = sys_platform or sys.platform
    if plat.startswith("win"):
        system = "windows"
    elif plat == "darwin":
        system = "macos"
    elif plat.startswith("linux"):
        system = "linux"
    else:
        system = "other"
    wsl = docker = False
    if system == "linux":
        version = _read(root / "proc" / "version").lower()
        wsl = "microsoft" in version or "wsl" in version or bool(os.environ.get("WSL_DISTRO_NAME"))
        cgroup = _read(root / "proc" / "1" / "cgroup")
        docker = (root / ".dockerenv").exists() or any(
            marker in cgroup for marker in ("docker", "containerd", "kubepods", "libpod")
        )
    return OSInfo(
        system=system,
        release=platform.release(),
        machine=machine or platform.machine() or "unknown",
        python=platform.python_version(),
        wsl=wsl,
        docker=docker,
    )
