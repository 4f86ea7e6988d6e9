"""Each of StoryCore's writers, one by one: planted links never carry a write out of the project,
and planted files (a named pipe, a file of gigabytes) cost neither a hang nor memory.

``test_symlinks.py`` shows a whole render refused before it starts; these tests reach each
writer directly (the diagnostics are written only after a failure, the metrics at the end of a
run), with real files, real links and real child processes.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from storycore.diagnostics import DiagnosticHistory, classify
from storycore.engine._outputs import render_folder, store_render
from storycore.errors import OutsideProjectError, ProjectError, ServerUnreachable
from storycore.journal import Journal
from storycore.manifest import AssetRecord, asset_relpath
from storycore.monitoring import MonitoringSession
from tests.engine.conftest import make_project
from tests.security._support import run_storycore

BASHRC = b"# my shell start-up file\nexport PATH=$HOME/bin:$PATH\n"
HUGE = 512 << 20  # a planted file's size: sparse on disk, gigabytes of memory if read whole


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "victim").mkdir(parents=True)
    (home / ".bashrc").write_bytes(BASHRC)
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "projects", 2)
    (root / ".storycore").mkdir()
    return root


def _diagnosis() -> object:
    return classify(ServerUnreachable("connection refused", where="http://127.0.0.1:1"))


def test_diagnostics_are_never_appended_through_a_link(project: Path, home: Path) -> None:
    link = project / ".storycore" / "diagnostics.jsonl"
    link.symlink_to(home / ".bashrc")
    history = DiagnosticHistory.for_project(project)

    with pytest.raises(OutsideProjectError) as caught:
        history.record(_diagnosis())  # type: ignore[arg-type]

    assert str(link) in str(caught.value)
    assert (home / ".bashrc").read_bytes() == BASHRC


def test_diagnostics_are_never_appended_to_a_hard_link(project: Path, home: Path) -> None:
    path = project / ".storycore" / "diagnostics.jsonl"
    os.link(home / ".bashrc", path)

    with pytest.raises(OutsideProjectError, match="hard link"):
        DiagnosticHistory.for_project(project).record(_diagnosis())  # type: ignore[arg-type]

    assert (home / ".bashrc").read_bytes() == BASHRC


def test_a_huge_planted_diagnostics_file_is_read_in_bounded_memory(project: Path) -> None:
    path = project / ".storycore" / "diagnostics.jsonl"
    line = json.dumps(_diagnosis().to_dict()) + "\n"  # type: ignore[attr-defined]
    with path.open("wb") as handle:
        handle.truncate(HUGE)  # half a gigabyte of NULs without a newline
        handle.seek(HUGE)
        handle.write(b"\n" + line.encode())
    history = DiagnosticHistory.for_project(project)

    tracemalloc.start()
    try:
        loaded = history.load()
        history.record(_diagnosis())  # type: ignore[arg-type]  # grows past max_bytes: compacts
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(loaded) == 1
    assert peak < 16 << 20, f"peak {peak >> 20} MB"
    assert path.stat().st_size < 4096  # compacted to the two real lines


async def test_metrics_never_land_in_a_linked_folder(project: Path, home: Path) -> None:
    link = project / ".storycore" / "metrics"
    link.symlink_to(home / "victim", target_is_directory=True)

    with pytest.raises(OutsideProjectError) as caught:
        async with MonitoringSession(project, interval=60) as monitor:
            monitor.record_timing("submit", 0.1)

    assert str(link) in str(caught.value)
    assert list((home / "victim").iterdir()) == []


async def test_metrics_summary_skips_a_planted_pipe_and_a_huge_file(project: Path) -> None:
    metrics = project / ".storycore" / "metrics"
    metrics.mkdir()
    os.mkfifo(metrics / "run-20990101T000000-1-aaaaaa.jsonl")
    with (metrics / "run-20990101T000000-2-bbbbbb.jsonl").open("wb") as handle:
        handle.truncate(HUGE)
    good = {"type": "run_start", "t": 1.0, "run_id": "good"}
    (metrics / "run-20000101T000000-3-cccccc.jsonl").write_text(json.dumps(good) + "\n")

    result = await run_storycore("metrics", "--project", str(project), "--json", limit_s=30)

    result.assert_bounded(seconds=30)
    assert result.rc == 0, result.output[-3000:]
    runs = json.loads(result.stdout)["runs"]
    assert "good" in [r["run_id"] for r in runs]


def test_the_journal_is_never_appended_through_a_hard_link(project: Path, home: Path) -> None:
    path = project / ".storycore" / "journal.jsonl"
    os.link(home / ".bashrc", path)

    with Journal(project) as journal, pytest.raises(OutsideProjectError, match="hard link"):
        journal.append("submit", prompt_id="p1", shot_id="shot_01")

    assert (home / ".bashrc").read_bytes() == BASHRC


def test_the_journal_refuses_a_named_pipe_without_waiting(project: Path) -> None:
    os.mkfifo(project / ".storycore" / "journal.jsonl")

    with pytest.raises(ProjectError, match="named pipe"):
        list(Journal(project).events())
    with Journal(project) as journal, pytest.raises(ProjectError, match="named pipe"):
        journal.append("submit", prompt_id="p1", shot_id="shot_01")


async def test_a_huge_planted_journal_costs_no_memory(project: Path) -> None:
    """A render reads the journal (resume): a planted half-gigabyte line is skipped piecewise."""
    with (project / ".storycore" / "journal.jsonl").open("wb") as handle:
        handle.truncate(HUGE)

    result = await run_storycore("generate-images", "--project", str(project), "--mock", limit_s=60)

    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output[-3000:]
    assert (project / "assets/images/generated/shot_01/shot_01_v1_r001.png").is_file()


def _record(shot_id: str) -> AssetRecord:
    return AssetRecord(
        asset_id=f"{shot_id}-v1-r1",
        shot_id=shot_id,
        version=1,
        render=1,
        path=str(asset_relpath(shot_id, 1, 1)),
        sha256="",
        size=0,
        width=8,
        height=8,
        placeholder=True,
        created_at="2026-01-01T00:00:00Z",
    )


def test_a_render_never_lands_in_a_linked_shot_folder(project: Path, home: Path) -> None:
    link = project / "assets" / "images" / "generated" / "shot_01"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(home / "victim", target_is_directory=True)

    with pytest.raises(OutsideProjectError) as caught:
        store_render(project, _record("shot_01"), b"\x89PNG not really")
    with pytest.raises(OutsideProjectError):
        render_folder(project, "shot_01")

    assert str(link) in str(caught.value)
    assert list((home / "victim").iterdir()) == []
    assert render_folder(project, "shot_02").is_dir()  # a plain folder is made


def test_a_link_at_the_image_itself_is_replaced_not_written_through(
    project: Path, home: Path
) -> None:
    record = _record("shot_01")
    image = project / record.path
    image.parent.mkdir(parents=True)
    image.symlink_to(home / ".bashrc")

    store_render(project, record, b"image bytes")

    assert not image.is_symlink()
    assert image.read_bytes() == b"image bytes"
    assert (home / ".bashrc").read_bytes() == BASHRC
