"""The recordings of a real ComfyUI are kept once: the emulator ships what it serves, the tests
hold the rest, and nothing reads a folder outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from tests._recordings import RECORDINGS_DIR, load_reference_json, recording_text

SHIPPED = [
    "object_info.json",
    "object_info_custom_nodes.json",
    "system_stats.json",
    "features.json",
    "extensions.json",
    "embeddings.json",
    "models.json",
]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _shipped_files() -> set[str]:
    data = resources.files("storycore.emulator").joinpath("data")
    return {entry.name.removesuffix(".gz") for entry in data.iterdir() if entry.is_file()}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recording_is_a_recorded_body(name: str) -> None:
    recorded = load_reference_json(name)
    assert isinstance(recorded, dict) and recorded


def test_every_recording_is_stored_once() -> None:
    shipped = _shipped_files()
    assert shipped == set(SHIPPED)
    in_tests = {p.name for p in RECORDINGS_DIR.iterdir()}
    assert not shipped & in_tests, "a recording the emulator ships is copied into tests/data too"


def test_nothing_reads_the_shared_folder() -> None:
    offenders = []
    for folder in ("src", "tests", "bench"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            text = path.read_text(encoding="utf-8")
            if "shared/comfyui-reference" in text.replace('" / "', "/") or "REFERENCE_DIR" in text:
                offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == [], f"these files still look for ../shared: {offenders}"


def test_recorded_json_files_parse() -> None:
    for path in sorted(RECORDINGS_DIR.glob("*.json")):
        json.loads(path.read_text(encoding="utf-8"))


def test_a_missing_recording_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "test_uses_missing.py").write_text(
        "from tests._recordings import load_reference_json\n"
        "DATA = load_reference_json('no_such_recording.json')  # at collection\n"
        "def test_never_runs():\n"
        "    assert DATA\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_uses_missing.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "recording 'no_such_recording.json' is missing" in result.stdout
    assert "Traceback" not in result.stdout and "FileNotFoundError" not in result.stdout
    assert result.returncode != 0


def test_recording_text_reads_gzipped_and_plain_copies() -> None:
    assert '"KSampler"' in recording_text("object_info.json")
    assert recording_text("main_help.txt").startswith("usage:")
