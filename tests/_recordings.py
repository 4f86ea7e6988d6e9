"""The recordings of a real ComfyUI 0.3.64 the tests compare against, kept in the repository.

One copy of each recording: the seven the emulator serves ship as its package data
(``src/storycore/emulator/data/``, some gzipped); every other one lives in
``tests/data/comfyui-reference/``. Nothing here reads ``../shared``: that folder is only where
newer recordings appear, to be copied in by hand. A missing file fails the test asking for it
with one line naming the file, at collection or at run time, never with a traceback.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "RECORDINGS_DIR",
    "load_reference_json",
    "load_transcript",
    "recording_names",
    "recording_path",
    "recording_text",
]

RECORDINGS_DIR = Path(__file__).resolve().parent / "data" / "comfyui-reference"


def _emulator_data() -> Path:
    base = resources.files("storycore.emulator").joinpath("data")
    return Path(str(base))


def _missing(name: str) -> None:
    pytest.fail(
        f"recording {name!r} is missing: it belongs in {RECORDINGS_DIR} (or the emulator's "
        f"{_emulator_data()}); copy it from the recordings of a real ComfyUI",
        pytrace=False,
    )


def recording_path(name: str) -> Path:
    """The file of one uncompressed recording."""
    for folder in (RECORDINGS_DIR, _emulator_data()):
        path = folder / name
        if path.is_file():
            return path
    _missing(name)
    raise AssertionError("unreachable")


def recording_text(name: str) -> str:
    """The text of one recording, wherever its single copy lives (gzipped or not)."""
    packed = _emulator_data() / f"{name}.gz"
    if packed.is_file():
        return gzip.decompress(packed.read_bytes()).decode("utf-8")
    return recording_path(name).read_text(encoding="utf-8")


def recording_names(pattern: str) -> list[str]:
    """Names of the recordings matching a glob ``pattern`` (both folders), sorted."""
    names = {p.name for p in RECORDINGS_DIR.glob(pattern)}
    names |= {p.name for p in _emulator_data().glob(pattern)}
    return sorted(names)


def load_reference_json(name: str) -> Any:
    """One recorded JSON document."""
    return json.loads(recording_text(name))


def load_transcript(name: str) -> list[dict[str, Any]]:
    """One recorded transcript (``*.jsonl``): a list of events."""
    lines = recording_text(name).splitlines()
    return [json.loads(line) for line in lines if line.strip()]
