"""Finding the install, the command line and environment, ComfyUI Desktop detection."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from storycore.comfyui.install import (
    ComfyUIInstall,
    detect_desktop,
    emulator_install,
    find_install,
    server_url,
)
from storycore.comfyui.manager import ComfyUIManager, ManagerOptions, server_env, server_flags
from storycore.errors import ConfigError, InstallNotFound
from tests._recordings import recording_text

from ._support import free_port, make_install, posix_only, recorded_stats_app, serve


def _help_flags() -> set[str]:
    text = recording_text("main_help.txt")
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9_-]*)", text))


@posix_only
def test_portable_layout(tmp_path: Path) -> None:
    root, _ = make_install(tmp_path / "ComfyUI_windows_portable", "portable")
    install = find_install(root)
    assert install.kind == "portable"
    assert install.python == root / "python_embeded" / "python.exe"
    assert install.cwd == root
    command = install.command(["--port", "1"])
    assert command == [
        str(root / "python_embeded" / "python.exe"),
        "-s",
        str(Path("ComfyUI") / "main.py"),
        "--port",
        "1",
    ]
    # Pointing at the ComfyUI folder inside the portable build finds the same thing.
    assert find_install(root / "ComfyUI") == install


@posix_only
@pytest.mark.parametrize("layout", ["venv", ".venv"])
def test_checkout_with_virtual_environment(tmp_path: Path, layout: str) -> None:
    root, _ = make_install(tmp_path / "ComfyUI", layout)
    install = find_install(root)
    assert install.kind == "venv"
    assert install.python == root.resolve() / layout / "bin" / "python"
    assert install.entry == (str(root.resolve() / "main.py"),)
    assert install.cwd == root.resolve()


def test_configured_python_with_main_py(tmp_path: Path) -> None:
    root, python = make_install(tmp_path / "ComfyUI", "python")
    assert python is not None
    install = find_install(root, python)
    assert install.kind == "python"
    assert install.command() == [str(python), str(root.resolve() / "main.py")]


@posix_only
def test_configured_python_wins_over_a_venv(tmp_path: Path) -> None:
    root, _ = make_install(tmp_path / "ComfyUI", "venv")
    install = find_install(root, Path(sys.executable))
    assert (install.kind, install.python) == ("python", Path(sys.executable))


def test_nothing_found_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InstallNotFound) as info:
        find_install(tmp_path / "empty")
    message = str(info.value)
    assert "python_embeded" in message and "venv" in message
    assert str((tmp_path / "empty").resolve() / "main.py") in message
    assert info.value.hint and "install_path" in info.value.hint


def test_main_py_without_python_is_not_enough(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n", encoding="utf-8")
    with pytest.raises(InstallNotFound, match="checked"):
        find_install(tmp_path)


def test_missing_path_and_missing_python(tmp_path: Path) -> None:
    with pytest.raises(InstallNotFound) as info:
        find_install(None)
    assert info.value.where == "comfyui.install_path"
    with pytest.raises(InstallNotFound, match="not a folder"):
        find_install(tmp_path / "nope")
    with pytest.raises(InstallNotFound, match="python executable does not exist"):
        find_install(tmp_path, tmp_path / "python-missing")


def test_emulator_install_runs_the_module(tmp_path: Path) -> None:
    install = emulator_install(cwd=tmp_path)
    assert install.command(["--port", "5"]) == [
        sys.executable,
        "-m",
        "storycore.emulator",
        "--base-directory",
        str(tmp_path),
        "--port",
        "5",
    ]
    assert isinstance(install, ComfyUIInstall) and install.cwd == tmp_path


def test_server_url() -> None:
    assert server_url("0.0.0.0", 8188) == "http://127.0.0.1:8188"
    assert server_url("::1", 1) == "http://[::1]:1"
    assert server_url("localhost", 2) == "http://localhost:2"


# -- command line and environment ---------------------------------------------------------------


def test_cpu_flags_are_real_comfyui_flags() -> None:
    opts = ManagerOptions(gpu=False, vram_mode="low", cuda_device=1, extra_args=("--fast",))
    flags = server_flags(opts)
    assert flags == [
        "--listen",
        "127.0.0.1",
        "--port",
        "8188",
        "--cpu",
        "--fast",
        "--disable-auto-launch",
    ]
    names = {f for f in flags if f.startswith("--")}
    assert names <= _help_flags()
    env = server_env(opts, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize(
    ("mode", "flag"), [("low", "--lowvram"), ("none", "--novram"), ("high", "--highvram")]
)
def test_gpu_flags(mode: str, flag: str) -> None:
    opts = ManagerOptions(
        host="0.0.0.0",
        port=9000,
        cuda_device=2,
        vram_mode=mode,  # type: ignore[arg-type]
        reserve_vram_gb=1.5,
    )
    flags = server_flags(opts)
    assert flags[:4] == ["--listen", "0.0.0.0", "--port", "9000"]
    assert flags[4:6] == ["--cuda-device", "2"]
    assert flag in flags and "--cpu" not in flags
    assert flags[flags.index("--reserve-vram") + 1] == "1.5"
    assert flags[-1] == "--disable-auto-launch"
    assert {f for f in flags if f.startswith("--")} <= _help_flags()
    assert server_env(opts, {})["CUDA_VISIBLE_DEVICES"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in server_env(replace(opts, cuda_device=None), {})
    assert server_flags(replace(opts, vram_mode="normal")).count("--lowvram") == 0


@pytest.mark.parametrize("arg", ["--port", "--listen=0.0.0.0", "--cpu"])
def test_extra_args_may_not_override_owned_flags(arg: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_flags(ManagerOptions(extra_args=(arg,)))
    assert info.value.where == "comfyui.extra_args"


# -- ComfyUI Desktop ----------------------------------------------------------------------------


async def test_detect_desktop() -> None:
    async with serve(recorded_stats_app()) as port:
        stats = await detect_desktop(port=port, timeout=2)
        assert stats is not None and stats.comfyui_version == "0.3.64"
    assert await detect_desktop(port=free_port(), timeout=1) is None


async def test_start_uses_desktop_when_no_install_is_configured(tmp_path: Path) -> None:
    opts = ManagerOptions(
        port=free_port(), state_dir=tmp_path / "state", install_path=tmp_path / "no-such-folder"
    )
    async with serve(recorded_stats_app()) as desktop_port:
        manager = ComfyUIManager(opts)
        manager.desktop_port = desktop_port
        result = await manager.start()
        assert result.action == "desktop" and not result.managed
        assert result.url == f"http://127.0.0.1:{desktop_port}"
        assert "not manage" in result.message
        assert not manager.pidfile_path.exists()


async def test_no_install_and_no_desktop_raises(tmp_path: Path) -> None:
    manager = ComfyUIManager(ManagerOptions(port=free_port(), state_dir=tmp_path / "s"))
    manager.desktop_port = free_port()
    with pytest.raises(InstallNotFound):
        await manager.start()


@posix_only
async def test_start_adopts_desktop_rather_than_starting_another(tmp_path: Path) -> None:
    root, _ = make_install(tmp_path / "ComfyUI", "venv")
    opts = ManagerOptions(port=free_port(), state_dir=tmp_path / "s", install_path=root)
    async with serve(recorded_stats_app()) as desktop_port:
        manager = ComfyUIManager(opts)
        manager.desktop_port = desktop_port
        result = await manager.start()
        assert result.action == "desktop" and not result.managed
        assert f"nothing answers at {opts.url}" in result.message
        assert manager._popen is None and not manager.pidfile_path.exists()  # nothing spawned


async def test_a_broken_install_folder_is_reported_when_desktop_is_not_looked_for(
    tmp_path: Path,
) -> None:
    # The CLI turns detect_desktop off when the user chose the port, host or install.
    opts = ManagerOptions(
        port=free_port(), state_dir=tmp_path / "s", install_path=tmp_path, detect_desktop=False
    )
    async with serve(recorded_stats_app()) as desktop_port:
        manager = ComfyUIManager(opts)
        manager.desktop_port = desktop_port
        with pytest.raises(InstallNotFound, match="no runnable ComfyUI"):
            await manager.start()


def test_options_from_the_real_settings(tmp_path: Path) -> None:
    from storycore.comfyui.manager import options_from_settings
    from storycore.config import ComfyUISettings, Settings

    settings = Settings(
        comfyui=ComfyUISettings(
            install_path=tmp_path / "ComfyUI",
            port=9999,
            vram_mode="low",
            graceful_shutdown=3,
            force_kill=4,
            max_retries=5,
            health_check_interval=2,
            extra_args=("--fast",),
            gpu=False,
        ),
        state_dir=tmp_path / "state",
    )
    opts = options_from_settings(settings)
    assert opts.install_path == tmp_path / "ComfyUI" and opts.port == 9999
    assert (opts.graceful_timeout, opts.force_kill_timeout) == (3, 4)
    assert (opts.max_restarts, opts.health_interval) == (5, 2)
    assert opts.vram_mode == "low" and not opts.gpu and opts.extra_args == ("--fast",)
    assert opts.state_folder == tmp_path / "state" / "comfyui" / "127.0.0.1_9999"
    pinned = options_from_settings(settings, port=8190, cuda_device=1, host="::1")
    assert pinned.cuda_device == 1 and pinned.port == 8190
    assert pinned.state_folder.name == "__1_8190"
    default = options_from_settings(Settings())
    assert default.state_folder.parts[-3:] == ("storycore", "comfyui", "127.0.0.1_8188")


async def test_status_reports_a_running_desktop_as_running(tmp_path: Path) -> None:
    opts = ManagerOptions(port=free_port(), state_dir=tmp_path / "s")
    manager = ComfyUIManager(opts)
    manager.desktop_port = free_port()
    stopped = await manager.status(timeout=0.5)
    assert (stopped.state, stopped.exit_code, stopped.kind) == ("stopped", 3, None)
    assert "nor ComfyUI Desktop" in stopped.message
    async with serve(recorded_stats_app()) as desktop_port:
        manager.desktop_port = desktop_port
        status = await manager.status(timeout=1)
        unlooked = await ComfyUIManager(replace(opts, detect_desktop=False)).status(timeout=1)
    assert (status.state, status.exit_code, status.kind) == ("running", 0, "desktop")
    assert status.url == f"http://127.0.0.1:{desktop_port}" and not status.managed
    assert "ComfyUI Desktop 0.3.64 is running" in status.message
    assert "not started by StoryCore" in status.message
    assert (unlooked.state, unlooked.exit_code) == ("stopped", 3)
