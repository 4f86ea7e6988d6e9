"""Finding the installs people really have when comfyui.install_path is left at its default:
comfy-cli's workspaces, ~/ComfyUI, the Windows portable build unzipped in the user's folders,
ComfyUI Desktop's base folder. Fake installs live in the test's private HOME; only the OS name
is mocked (``system=``) where a layout belongs to another OS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storycore.comfyui.install import desktop_base_folder, find_install, search_places
from storycore.config import default_install_path
from storycore.errors import InstallNotFound

from ._support import make_install, posix_only
from .test_cli_comfyui import as_json, cli, port  # noqa: F401  (port is a fixture)


def _home() -> Path:
    home = Path.home()
    assert "pytest" in str(home) or "tmp" in str(home), "the fixture must isolate HOME"
    return home


def _comfy_cli_config(system_folder: Path, **values: str) -> None:
    system_folder.mkdir(parents=True, exist_ok=True)
    lines = ["[DEFAULT]", *(f"{key} = {value}" for key, value in values.items())]
    (system_folder / "config.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")


@posix_only
def test_a_configured_path_always_wins(tmp_path: Path) -> None:
    make_install(_home() / "ComfyUI", "venv")  # findable, but the user named another folder
    with pytest.raises(InstallNotFound) as info:
        find_install(tmp_path / "mine")
    assert info.value.where == str(tmp_path / "mine")
    assert "ComfyUI" not in info.value.message.replace("ComfyUI install", "")


@posix_only
def test_home_comfyui_checkout_is_found_from_the_default(tmp_path: Path) -> None:
    root, _ = make_install(_home() / "ComfyUI", ".venv")
    install = find_install(default_install_path())
    assert (install.kind, install.root) == ("venv", root.resolve())
    assert install.found_by == "~/ComfyUI"
    assert install.describe().endswith("(~/ComfyUI)")
    # The same folder configured by hand is used as it is, with no note.
    assert find_install(root).found_by == ""


@posix_only
@pytest.mark.parametrize(
    ("system", "workspace"),
    [("linux", "comfy/ComfyUI"), ("macos", "Documents/comfy/ComfyUI")],
)
def test_comfy_cli_default_workspace(system: str, workspace: str) -> None:
    root, _ = make_install(_home() / workspace, ".venv")
    install = find_install(default_install_path(), system=system)  # type: ignore[arg-type]
    assert install.root == root.resolve()
    assert install.found_by == "comfy-cli's default workspace"


@posix_only
def test_comfy_cli_recorded_workspaces_come_first(tmp_path: Path) -> None:
    make_install(_home() / "ComfyUI", "venv")
    make_install(_home() / "comfy" / "ComfyUI", ".venv")
    chosen, _ = make_install(tmp_path / "elsewhere" / "ComfyUI", "venv")
    recent, _ = make_install(tmp_path / "recent" / "ComfyUI", "venv")
    config = _home() / ".config" / "comfy-cli"
    _comfy_cli_config(config, default_workspace=str(chosen), recent_workspace=str(recent))
    install = find_install(default_install_path(), system="linux")
    assert install.root == chosen.resolve()
    assert install.found_by == f"comfy-cli's default_workspace in {config / 'config.ini'}"
    _comfy_cli_config(config, recent_workspace=str(recent))
    assert find_install(default_install_path(), system="linux").root == recent.resolve()
    (config / "config.ini").write_text("not [an ini\n", encoding="utf-8")  # ignored
    found = find_install(default_install_path(), system="linux")
    assert found.root == (_home() / "comfy" / "ComfyUI").resolve()


def test_search_order_is_documented() -> None:
    home = _home()
    linux = [(p.path, p.source) for p in search_places("linux")]
    assert linux == [
        (home / "comfy" / "ComfyUI", "comfy-cli's default workspace"),
        (home / "ComfyUI", "~/ComfyUI"),
    ]
    windows = [p.path for p in search_places("windows")]
    assert windows[:2] == [home / "Documents" / "comfy" / "ComfyUI", home / "ComfyUI"]
    assert windows[2:] == [
        home / "Downloads" / "ComfyUI_windows_portable",
        home / "Desktop" / "ComfyUI_windows_portable",
        home / "Documents" / "ComfyUI_windows_portable",
        home / "OneDrive" / "Desktop" / "ComfyUI_windows_portable",
        home / "OneDrive" / "Documents" / "ComfyUI_windows_portable",
        home / "ComfyUI_windows_portable",
    ]


@posix_only
@pytest.mark.parametrize(
    "where",
    [
        "Downloads/ComfyUI_windows_portable",
        "Desktop/ComfyUI_windows_portable_nvidia/ComfyUI_windows_portable",
        "Documents/ComfyUI_windows_portable_nvidia",
        "ComfyUI_windows_portable",
    ],
)
def test_windows_portable_unzipped_in_the_users_folders(where: str) -> None:
    root, _ = make_install(_home() / where, "portable")
    install = find_install(default_install_path(), system="windows")
    assert (install.kind, install.root) == ("portable", root)
    assert install.python == root / "python_embeded" / "python.exe"
    assert install.found_by.startswith("the portable build unzipped in ")
    # A Windows build on Linux or macOS is not run.
    with pytest.raises(InstallNotFound):
        find_install(default_install_path(), system="linux")


def test_nothing_anywhere_lists_every_place_looked(tmp_path: Path) -> None:
    (_home() / "ComfyUI").mkdir()  # a folder, but nothing runnable in it
    with pytest.raises(InstallNotFound) as info:
        find_install(default_install_path(), system="windows")
    err = info.value
    assert err.where == "comfyui.install_path"
    message = err.message
    places = [str(default_install_path()), *(str(p.path) for p in search_places("windows"))]
    for place in places:
        assert place in message
    positions = [message.index(place + " (") for place in places]
    assert positions == sorted(positions)  # in the order they were tried
    assert f"{_home() / 'ComfyUI'} (~/ComfyUI): no runnable ComfyUI in it" in message
    assert "no such folder" in message
    assert "Desktop is installed" not in (err.hint or "")
    assert "Traceback" not in err.paragraph()


def test_desktop_base_folder_is_read_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "Documents" / "ComfyUI"
    base.mkdir(parents=True)
    mac = _home() / "Library" / "Application Support" / "ComfyUI" / "config.json"
    mac.parent.mkdir(parents=True)
    mac.write_text(json.dumps({"basePath": str(base), "installState": "installed"}))
    assert desktop_base_folder("macos") == base
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    win = tmp_path / "Roaming" / "ComfyUI" / "config.json"
    win.parent.mkdir(parents=True)
    win.write_text(json.dumps({"basePath": str(base)}))
    assert desktop_base_folder("windows") == base
    linux = _home() / ".config" / "ComfyUI" / "config.json"
    linux.parent.mkdir(parents=True)
    linux.write_text("{broken")
    assert desktop_base_folder("linux") is None
    with pytest.raises(InstallNotFound) as info:
        find_install(default_install_path(), system="macos")
    assert f"ComfyUI Desktop is installed (base folder {base})" in (info.value.hint or "")
    assert "port 8000" in (info.value.hint or "")


@posix_only
def test_comfyui_start_finds_comfy_clis_workspace(port: int) -> None:  # noqa: F811
    """A real child process: `storycore comfyui start` with nothing configured starts the
    install comfy-cli made, and says where it found it."""
    root, _ = make_install(_home() / "comfy" / "ComfyUI", ".venv")
    started = cli("start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert f"at {root} (comfy-cli's default workspace)" in started.stderr
    assert cli("status", "--port", str(port)).returncode == 0  # running
    stopped = as_json(cli("stop", "--port", str(port), "--json"))
    assert stopped["action"] == "stopped"
    root.joinpath("main.py").unlink()
    missing = cli("start", "--port", str(port))
    assert missing.returncode == 5 and "Traceback" not in missing.stderr
    assert f"{root} (comfy-cli's default workspace): no runnable ComfyUI in it" in missing.stderr
