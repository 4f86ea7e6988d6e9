"""Where is ComfyUI and how is it run? Detects the install layouts and ComfyUI Desktop.

Layouts, tried in this order for the configured install path:

1. a configured python executable plus ``main.py`` (in the folder or in ``ComfyUI/``);
2. the Windows portable build: ``python_embeded\\python.exe -s ComfyUI\\main.py``, run from the
   portable folder (the folder given may also be its ``ComfyUI`` subfolder);
3. a git checkout with a virtual environment in ``venv/`` or ``.venv/`` (``bin/python`` on POSIX,
   ``Scripts\\python.exe`` on Windows).

When ``comfyui.install_path`` is its default and nothing runnable is there, the places people
really have ComfyUI are searched in a fixed order (comfy-cli's workspaces, ``~/ComfyUI``, the
Windows portable build unzipped in Downloads, Desktop, Documents or home; see
:mod:`storycore.comfyui._install_search`); a path the user configured is the only one used.

When nothing fits, :class:`InstallNotFound` lists every path that was looked at. ComfyUI Desktop
(an Electron app serving on port 8000) cannot be started by us: :func:`detect_desktop` only finds
it, so it can be used but is never managed; its base folder is named in the message when found.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from storycore.comfyui._install_search import (
    SearchPlace,
    System,
    current_system,
    desktop_base_folder,
    search_places,
)
from storycore.comfyui.health import SystemStats, probe_system_stats
from storycore.errors import InstallNotFound

__all__ = [
    "DESKTOP_PORT",
    "EMULATOR_MODULE",
    "ComfyUIInstall",
    "InstallKind",
    "SearchPlace",
    "desktop_base_folder",
    "detect_desktop",
    "emulator_install",
    "find_install",
    "preview_flags",
    "search_places",
    "server_url",
]

DESKTOP_PORT = 8000
"""The port ComfyUI Desktop serves on."""

EMULATOR_MODULE = "storycore.emulator"

InstallKind = Literal["portable", "venv", "python", "emulator"]

PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
"""ComfyUI's ``--preview-method`` values (comfy/cli_args.py ``LatentPreviewMethod`` @ 03294572;
its own default is ``none``: no previews)."""


@dataclass(frozen=True)
class ComfyUIInstall:
    """How to run one ComfyUI: ``python [python_args] entry [server flags]`` in ``cwd``."""

    kind: InstallKind
    root: Path
    python: Path
    entry: tuple[str, ...]
    cwd: Path
    python_args: tuple[str, ...] = ()
    found_by: str = ""
    """Where the search found it (``comfy-cli's default workspace``...); empty when it is the
    configured path."""

    def command(self, flags: Sequence[str] = ()) -> list[str]:
        """The full command line for these server flags."""
        return [str(self.python), *self.python_args, *self.entry, *flags]

    def describe(self) -> str:
        names = {
            "portable": "Windows portable build",
            "venv": "git checkout with a virtual environment",
            "python": "configured python with main.py",
            "emulator": "StoryCore's ComfyUI emulator",
        }
        found = f" ({self.found_by})" if self.found_by else ""
        return f"{names[self.kind]} at {self.root}{found}"


def _venv_pythons(venv: Path) -> list[Path]:
    if os.name == "nt":
        return [venv / "Scripts" / "python.exe"]
    return [venv / "bin" / "python", venv / "bin" / "python3"]


def _is_file(path: Path, looked: list[str]) -> bool:
    looked.append(str(path))
    return path.is_file()


def _find_main(root: Path, looked: list[str]) -> Path | None:
    for candidate in (root / "main.py", root / "ComfyUI" / "main.py"):
        if _is_file(candidate, looked):
            return candidate
    return None


def find_install(
    install_path: Path | None,
    python_executable: Path | None = None,
    *,
    search: bool | None = None,
    system: System | None = None,
) -> ComfyUIInstall:
    """Detect how to run the ComfyUI at ``install_path``; raise :class:`InstallNotFound`.

    With ``search`` (by default: when ``install_path`` is the built-in default, which a user who
    set it would not have written) and nothing runnable there, the places of
    :func:`~storycore.comfyui._install_search.search_places` are tried in order and the error
    lists every one. ``system`` is the OS seam for tests (``"windows"``, ``"macos"``,
    ``"linux"``; default: this machine).
    """
    if search is None:
        from storycore.config import default_install_path

        search = install_path is not None and install_path == default_install_path()
    if not search:
        return _find_at(install_path, python_executable)
    assert install_path is not None
    _check_python(python_executable)
    failures: list[tuple[SearchPlace, str]] = []
    places = [SearchPlace(install_path, "comfyui.install_path, the default")]
    places += search_places(system)
    for place in places:
        if not place.path.expanduser().is_dir():
            failures.append((place, "no such folder"))
            continue
        try:
            found = _find_at(place.path, python_executable)
        except InstallNotFound:
            failures.append((place, "no runnable ComfyUI in it"))
            continue
        if place.path != install_path:
            found = replace(found, found_by=place.source)
        return found
    raise _not_found_anywhere(failures, system or current_system())


def _check_python(python_executable: Path | None) -> None:
    if python_executable is not None and not python_executable.expanduser().is_file():
        raise InstallNotFound(
            "the configured python executable does not exist",
            where=str(python_executable.expanduser()),
            hint="Set comfyui.python_executable to the python that has ComfyUI's "
            "requirements installed, or leave it empty to detect it",
        )


def _not_found_anywhere(failures: list[tuple[SearchPlace, str]], system: System) -> InstallNotFound:
    looked = "; ".join(f"{place.path} ({place.source}): {why}" for place, why in failures)
    desktop = desktop_base_folder(system)
    hint = (
        "Set comfyui.install_path to your ComfyUI folder (the portable build's folder, or a "
        "checkout with venv/ or .venv/), or start ComfyUI yourself"
    )
    if desktop is not None:
        hint = (
            f"ComfyUI Desktop is installed (base folder {desktop}) but only the app can start "
            "its server: open the ComfyUI app (StoryCore finds it on port 8000). Or s" + hint[1:]
        )
    return InstallNotFound(
        f"no runnable ComfyUI was found; looked in, in order: {looked}",
        where="comfyui.install_path",
        hint=hint,
    )


def _find_at(install_path: Path | None, python_executable: Path | None) -> ComfyUIInstall:
    if install_path is None:
        raise InstallNotFound(
            "no ComfyUI install path is configured, so there is nothing to start",
            where="comfyui.install_path",
            hint="Set comfyui.install_path to your ComfyUI folder, start ComfyUI yourself, "
            "or use 'storycore comfyui start --mock' for the emulator",
        )
    root = install_path.expanduser()
    looked: list[str] = []
    if not root.is_dir():
        raise InstallNotFound(
            "the configured ComfyUI install path is not a folder",
            where=str(root),
            hint="Set comfyui.install_path to the folder that holds ComfyUI's main.py "
            "(or the portable build's folder)",
        )
    root = root.resolve()

    if python_executable is not None:
        python = python_executable.expanduser()
        main = _find_main(root, looked)
        _check_python(python)
        if main is not None:
            return ComfyUIInstall("python", root, python, (str(main),), main.parent)

    # Windows portable: <root>/python_embeded/python.exe + <root>/ComfyUI/main.py;
    # the user may also point at <root>/ComfyUI.
    for portable in (root, root.parent):
        embedded = portable / "python_embeded" / "python.exe"
        main = portable / "ComfyUI" / "main.py"
        if _is_file(embedded, looked) and _is_file(main, looked):
            return ComfyUIInstall(
                "portable",
                portable,
                embedded,
                (str(Path("ComfyUI") / "main.py"),),
                portable,
                python_args=("-s",),
            )

    main = _find_main(root, looked)
    if main is not None:
        checkout = main.parent
        for venv_name in ("venv", ".venv"):
            for folder in dict.fromkeys((checkout, root)):
                for python in _venv_pythons(folder / venv_name):
                    if _is_file(python, looked):
                        return ComfyUIInstall("venv", checkout, python, (str(main),), checkout)

    shown = ", ".join(dict.fromkeys(looked))
    raise InstallNotFound(
        "no runnable ComfyUI was found: looked for a portable build (python_embeded/python.exe "
        "with ComfyUI/main.py), a checkout with venv/ or .venv/, and main.py for a configured "
        f"python; checked {shown}",
        where=str(root),
        hint="Point comfyui.install_path at your ComfyUI folder, or set "
        "comfyui.python_executable to the python that runs it",
    )


def emulator_install(python: Path | None = None, *, cwd: Path | None = None) -> ComfyUIInstall:
    """Run StoryCore's emulator (``python -m storycore.emulator``) like a ComfyUI whose
    base directory is ``cwd``: its ``input/`` and ``temp/`` (and ``output/`` unless the flags
    name one) stay there, as a managed server's should, instead of in a temporary folder."""
    exe = python or Path(sys.executable)
    folder = cwd or Path.cwd()
    entry = ("-m", EMULATOR_MODULE, "--base-directory", str(folder))
    return ComfyUIInstall("emulator", folder, exe, entry, folder)


async def detect_desktop(
    host: str = "127.0.0.1",
    port: int = DESKTOP_PORT,
    *,
    timeout: float = 2.0,  # noqa: ASYNC109
) -> SystemStats | None:
    """The ``/system_stats`` of a ComfyUI Desktop answering at ``host:port``, or None."""
    result = await probe_system_stats(server_url(host, port), timeout=timeout)
    return result.stats


def server_url(host: str, port: int) -> str:
    """``http://host:port`` for a listen address (a wildcard address becomes loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def preview_flags(method: str | None, extra_args: Sequence[str] = ()) -> list[str]:
    """``["--preview-method", method]``, or nothing: when ``method`` is ``None`` or the user's
    own ``extra_args`` already choose one (``--preview-method X`` or ``--preview-method=X``:
    theirs wins). ``method`` must be one of :data:`PREVIEW_METHODS` (the setting's type checks
    that; anything else is left out rather than passed to ComfyUI, which would refuse to start).
    """
    if method is None or method not in PREVIEW_METHODS:
        return []
    if any(arg == "--preview-method" or arg.startswith("--preview-method=") for arg in extra_args):
        return []
    return ["--preview-method", method]
