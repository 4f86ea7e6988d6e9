"""``comfyui.preview_method``: a managed ComfyUI is started with ``--preview-method`` (unless the
user's own ``extra_args`` choose one), and the server it starts really sends previews."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from storycore.comfyui import ComfyUIClient, PromptTracker
from storycore.comfyui.install import PREVIEW_METHODS, preview_flags
from storycore.comfyui.manager import ComfyUIManager, ManagerOptions
from storycore.comfyui.process import load_pidfile
from storycore.config import Settings, resolve_settings
from storycore.errors import ConfigError
from tests._recordings import recording_text
from tests.comfyui.test_comfyui_tracker import FAST, txt2img_graph

from ._support import emulator_available, make_install, posix_only

Factory = Callable[..., ComfyUIManager]


def _settings(**cli: Any) -> Settings:
    return resolve_settings(env={}, read_user_config=False, cli=cli).settings


def _flag_value(command: list[str] | tuple[str, ...]) -> list[str]:
    """Every value given to --preview-method in ``command`` (either spelling)."""
    values = []
    for n, arg in enumerate(command):
        if arg == "--preview-method":
            values.append(command[n + 1])
        elif arg.startswith("--preview-method="):
            values.append(arg.split("=", 1)[1])
    return values


def _options(settings: Settings, base: ManagerOptions) -> ManagerOptions:
    from storycore.comfyui import options_from_settings

    mapped = options_from_settings(settings, host=base.host, port=base.port)
    return replace(mapped, state_dir=base.state_dir, gpu=False, detect_desktop=False)


def test_the_setting_defaults_to_auto_and_takes_only_comfyui_values() -> None:
    assert _settings().comfyui.preview_method == "auto"
    for value in PREVIEW_METHODS:
        assert _settings(**{"comfyui.preview_method": value}).comfyui.preview_method == value
    with pytest.raises(ConfigError):
        _settings(**{"comfyui.preview_method": "fast"})


def test_the_flag_is_one_comfyui_0_3_64_knows() -> None:
    help_text = recording_text("main_help.txt")
    assert "--preview-method" in help_text
    for value in PREVIEW_METHODS:
        assert value in help_text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), ["auto"]),
        (("--fast",), ["auto"]),
        (("--preview-method", "taesd"), ["taesd"]),
        (("--preview-method=none",), ["none"]),
    ],
)
def test_the_users_own_extra_args_win(
    options: ManagerOptions, extra: tuple[str, ...], expected: list[str]
) -> None:
    from storycore.comfyui.manager import server_flags

    settings = _settings(**{"comfyui.extra_args": list(extra)})
    flags = server_flags(_options(settings, options))
    assert _flag_value(flags) == expected  # exactly once, never two to choose from
    assert flags[-1] == "--disable-auto-launch"


def test_preview_flags_leave_out_what_comfyui_would_refuse() -> None:
    assert preview_flags(None) == []
    assert preview_flags("bogus") == []
    assert preview_flags("latent2rgb") == ["--preview-method", "latent2rgb"]


def test_a_project_may_not_choose_the_preview_method(tmp_path: Path) -> None:
    """It is part of the command line of the server StoryCore starts (shared by every project
    that server renders): the user's choice only."""
    from storycore.project import init_project

    root = init_project("Board", tmp_path)
    (root / "storycore.toml").write_text('[comfyui]\npreview_method = "taesd"\n')
    with pytest.raises(ConfigError) as caught:
        resolve_settings(env={}, read_user_config=False, project_dir=root)
    assert "preview_method" in str(caught.value)


async def _previews_of_one_prompt(url: str) -> int:
    seen: list[int] = []
    async with ComfyUIClient(url, FAST) as client, PromptTracker(client) as tracker:
        handle = await tracker.submit(txt2img_graph(steps=3))
        tracker.on_preview(handle.prompt_id, lambda _p, step, _n: seen.append(step or 0))
        await handle.result(20)
    return len(seen)


@posix_only
@pytest.mark.skipif(not emulator_available(), reason="needs the emulator as the fake ComfyUI")
@pytest.mark.parametrize(("method", "previews"), [("latent2rgb", True), ("none", False)])
async def test_a_managed_start_passes_it_and_the_server_uses_it(
    tmp_path: Path, options: ManagerOptions, managed: Factory, method: str, previews: bool
) -> None:
    root, python = make_install(tmp_path / "install", "python")
    settings = _settings(**{"comfyui.preview_method": method})
    opts = replace(_options(settings, options), install_path=root, python_executable=python)
    manager = managed(opts)
    result = await manager.start()
    assert result.action == "started" and result.pid is not None
    assert _flag_value(result.command) == [method]
    running = psutil.Process(result.pid).cmdline()  # what the child really runs with
    assert _flag_value(running) == [method]
    record, _ = load_pidfile(manager.pidfile_path)
    assert record is not None and _flag_value(record.command) == [method]
    count = await _previews_of_one_prompt(manager.url)
    assert (count > 0) is previews, count
    await manager.stop()
