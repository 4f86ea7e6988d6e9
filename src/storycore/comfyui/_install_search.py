"""Where people's ComfyUI installs really are: the places searched when ``comfyui.install_path``
is left at its default and nothing is there.

In this order (the first runnable one wins; see :func:`search_places`):

1. comfy-cli's workspaces as it records them in its ``config.ini`` (``[DEFAULT]``
   ``default_workspace``, set by ``comfy set-default``, then ``recent_workspace``), then its
   built-in default workspace: ``~/comfy/ComfyUI`` on Linux, ``~/Documents/comfy/ComfyUI`` on
   Windows and macOS. The config folder is ``~/.config/comfy-cli`` (Linux),
   ``~/Library/Application Support/comfy-cli`` (macOS), ``~\\AppData\\Local\\comfy-cli``
   (Windows). Read in Comfy-Org/comfy-cli at commit e805d26b599773022e7e9594127acdfdf3017d8f:
   ``comfy_cli/constants.py`` (``DEFAULT_COMFY_WORKSPACE``, ``DEFAULT_CONFIG``,
   ``CONFIG_KEY_*``), ``comfy_cli/config_manager.py`` (configparser, ``DEFAULT`` section),
   ``comfy_cli/workspace_manager.py`` (``get_workspace_path``). A workspace is the ComfyUI
   folder itself, its python in ``.venv``/``venv`` there (``comfy_cli/resolve_python.py``).
2. ``~/ComfyUI`` (a git checkout).
3. Windows only: the portable build unzipped in the user's folders: ``ComfyUI_windows_portable``
   (or a folder named after the archive, ``ComfyUI_windows_portable_nvidia``, holding it) in
   Downloads, Desktop, Documents (the known folders, OneDrive's too) and the home folder.
4. ComfyUI Desktop's base folder, ``basePath`` in the app's ``config.json`` (electron-store) in
   its user-data folder: ``%APPDATA%\\ComfyUI`` (Windows), ``~/Library/Application
   Support/ComfyUI`` (macOS), ``~/.config/ComfyUI`` (Linux). Read in Comfy-Org/desktop at
   commit e2d964b7456cea8423c7b9d3371c612313c06baa: ``src/store/desktopSettings.ts``
   (``basePath``), ``src/store/desktopConfig.ts`` (``config.json`` in ``userData``),
   ``package.json`` (``productName`` ``ComfyUI``), ``src/main-process/comfyServer.ts`` (the
   app runs ``main.py`` from its own resources with ``--base-directory`` set to ``basePath``).
   That folder holds models, inputs and outputs but no ``main.py``: StoryCore cannot start it,
   only use the app's server (port 8000) when the app runs.

Everything here only reads small files and folder listings; nothing is written.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "PORTABLE_FOLDER",
    "SearchPlace",
    "System",
    "comfy_cli_config_file",
    "current_system",
    "desktop_base_folder",
    "desktop_config_file",
    "search_places",
]

System = Literal["windows", "macos", "linux"]
PORTABLE_FOLDER = "ComfyUI_windows_portable"


@dataclass(frozen=True)
class SearchPlace:
    """One place an install may be, and why it is looked at (for messages)."""

    path: Path
    source: str


def current_system() -> System:
    """The OS, in the three names the install layouts care about."""
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


def comfy_cli_config_file(system: System, home: Path) -> Path:
    """comfy-cli's ``config.ini`` (``constants.DEFAULT_CONFIG``; not XDG-aware on Linux)."""
    folders = {
        "windows": home / "AppData" / "Local" / "comfy-cli",
        "macos": home / "Library" / "Application Support" / "comfy-cli",
        "linux": home / ".config" / "comfy-cli",
    }
    return folders[system] / "config.ini"


def _comfy_cli_places(system: System, home: Path) -> Iterator[SearchPlace]:
    config = comfy_cli_config_file(system, home)
    parser = configparser.ConfigParser(interpolation=None)
    # Unreadable or malformed: its built-in default is still looked at.
    with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
        parser.read(config, encoding="utf-8")
    for key in ("default_workspace", "recent_workspace"):
        value = parser.defaults().get(key, "").strip()
        if value:
            yield SearchPlace(Path(value).expanduser(), f"comfy-cli's {key} in {config}")
    workspaces = home / "comfy" if system == "linux" else home / "Documents" / "comfy"
    builtin = workspaces / "ComfyUI"
    yield SearchPlace(builtin, "comfy-cli's default workspace")


def _user_folders(system: System, home: Path) -> list[Path]:
    """Downloads, Desktop, Documents (as the OS knows them, and under home) and home."""
    folders: list[Path] = []
    if system == current_system() == "windows":
        import platformdirs  # the known folders, wherever the user moved them

        folders += [
            platformdirs.user_downloads_path(),
            platformdirs.user_desktop_path(),
            platformdirs.user_documents_path(),
        ]
    folders += [home / "Downloads", home / "Desktop", home / "Documents"]
    folders += [home / "OneDrive" / "Desktop", home / "OneDrive" / "Documents", home]
    return list(dict.fromkeys(folders))


def _portable_places(system: System, home: Path) -> Iterator[SearchPlace]:
    for folder in _user_folders(system, home):
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.name.lower().startswith(PORTABLE_FOLDER.lower()) and entry.is_dir()
            )
        except OSError:
            names = []
        if not names:  # still named in the message: where the zip is usually unzipped
            names = [PORTABLE_FOLDER]
        for name in names:
            yield SearchPlace(folder / name, f"the portable build unzipped in {folder}")
            if name.lower() != PORTABLE_FOLDER.lower():
                inner = folder / name / PORTABLE_FOLDER
                yield SearchPlace(inner, f"the portable build unzipped in {folder / name}")


def desktop_config_file(system: System, home: Path) -> Path:
    """ComfyUI Desktop's ``config.json`` in Electron's user-data folder for ``ComfyUI``."""
    if system == "windows":
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
    elif system == "macos":
        base = home / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        base = Path(xdg) if xdg else home / ".config"
    return base / "ComfyUI" / "config.json"


def desktop_base_folder(system: System | None = None, home: Path | None = None) -> Path | None:
    """ComfyUI Desktop's base folder (``basePath`` in its ``config.json``), when it has one."""
    config = desktop_config_file(system or current_system(), home or Path.home())
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = data.get("basePath") if isinstance(data, dict) else None
    return Path(base).expanduser() if isinstance(base, str) and base.strip() else None


def search_places(system: System | None = None, home: Path | None = None) -> list[SearchPlace]:
    """Every place searched for a runnable install, in order (Desktop's folder not included:
    it cannot be started; see :func:`desktop_base_folder`)."""
    system = system or current_system()
    home = home or Path.home()
    places = [*_comfy_cli_places(system, home), SearchPlace(home / "ComfyUI", "~/ComfyUI")]
    if system == "windows":
        places += _portable_places(system, home)
    seen: set[Path] = set()
    unique: list[SearchPlace] = []
    for place in places:
        if place.path not in seen:
            seen.add(place.path)
            unique.append(place)
    return unique
