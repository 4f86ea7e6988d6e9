"""`assets clean --server` finds the local ComfyUI folder the way `comfyui start` finds the
install when comfyui.install_path is left at its default, ComfyUI Desktop's base folder last."""

from __future__ import annotations

import json
from pathlib import Path

from storycore.assets import find_comfyui_dir
from storycore.config import default_install_path


def _desktop(base: Path) -> None:
    config = Path.home() / ".config" / "ComfyUI" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"basePath": str(base)}), encoding="utf-8")


def test_desktop_base_folder_holds_the_outputs(tmp_path: Path) -> None:
    base = tmp_path / "Documents" / "ComfyUI"
    (base / "output").mkdir(parents=True)
    _desktop(base)
    found, looked = find_comfyui_dir(default_install_path())
    assert found == base
    assert looked[0] == str(default_install_path() / "ComfyUI")
    assert str(Path.home() / "ComfyUI") in looked and looked[-1] == str(base)
    # A checkout in ~/ComfyUI is searched before Desktop's folder.
    (Path.home() / "ComfyUI" / "output").mkdir(parents=True)
    assert find_comfyui_dir(default_install_path())[0] == Path.home() / "ComfyUI"


def test_a_configured_install_path_is_the_only_place(tmp_path: Path) -> None:
    (Path.home() / "ComfyUI" / "output").mkdir(parents=True)
    found, looked = find_comfyui_dir(tmp_path / "mine")
    assert found is None
    assert looked == [str(tmp_path / "mine" / "ComfyUI"), str(tmp_path / "mine")]
