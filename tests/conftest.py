"""Shared fixtures. Every test runs with a private home folder and a clean environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = Path(
    os.environ.get("STORYCORE_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "comfyui-reference")
)
EXAMPLES_DIR = REPO_ROOT / "examples"


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep tests away from the real home folder, config dirs and STORYCORE_* variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for name in list(os.environ):
        if name.startswith("STORYCORE_") and name != "STORYCORE_REFERENCE_DIR":
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The recordings of a real ComfyUI (``../shared/comfyui-reference``)."""
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"recordings not found at {REFERENCE_DIR}; set STORYCORE_REFERENCE_DIR")
    return REFERENCE_DIR


def load_reference_json(name: str) -> Any:
    return json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8"))


def load_transcript(name: str) -> list[dict[str, Any]]:
    lines = (REFERENCE_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
