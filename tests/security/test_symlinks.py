"""A received project cannot carry a render's writes outside it (issue 15, section 2).

Each test plants a link (or a hard link, or a named pipe) in a real project, points it at a
"victim" outside the project (a shell start-up file, a folder with a file in it), runs
``storycore generate-images --mock`` in a bounded child, and checks that the run stops with exit 3
and a message naming the link before anything is written, and that the victim's bytes and the
victim folder's listing are exactly what they were.

Links that stay inside the project are tolerated for folders (a shot folder kept elsewhere in
the project renders normally); StoryCore's own files (lock, journal, diagnostics) are never
followed, wherever the link points.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.engine.conftest import make_project
from tests.security._support import ChildResult, run_storycore

BASHRC = b"# my shell start-up file\nexport PATH=$HOME/bin:$PATH\n"


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The victim: a home folder outside the project, with a start-up file and a folder."""
    home = tmp_path / "home"
    (home / "victim").mkdir(parents=True)
    (home / ".bashrc").write_bytes(BASHRC)
    (home / "victim" / "keep.txt").write_text("the user's own file\n")
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "projects", 2)


def _plant(root: Path, relpath: str, target: Path) -> Path:
    """Replace ``root/relpath`` (whatever is there) with a link to ``target``."""
    link = root / relpath
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())
    return link


async def _render(root: Path, limit_s: float = 60) -> ChildResult:
    result = await run_storycore(
        "generate-images", "--project", str(root), "--mock", limit_s=limit_s
    )
    result.assert_bounded(seconds=limit_s)
    return result


def _assert_refused(result: ChildResult, link: Path) -> None:
    assert result.rc == 3, result.output[-3000:]
    assert str(link) in result.stderr, result.stderr
    assert "Traceback" not in result.output


# What a render writes, and where a planted link would take it.
FOLDER_LINKS = [
    ".storycore",
    ".storycore/metrics",
    ".storycore/cache",
    ".storycore/mock-server",
    ".storycore/mock-server/output/storycore",
    "assets",
    "assets/images/generated",
    "assets/images/generated/shot_01",
    "assets/images/generated/shot_02",
]
FILE_LINKS = [
    ".storycore/lock",
    ".storycore/journal.jsonl",
    ".storycore/diagnostics.jsonl",
]


@pytest.mark.parametrize("relpath", FOLDER_LINKS)
async def test_a_folder_linked_outside_is_refused_before_anything_is_written(
    project: Path, home: Path, relpath: str
) -> None:
    (project / ".storycore").mkdir(exist_ok=True)
    link = _plant(project, relpath, home / "victim")
    before = _snapshot(home)

    result = await _render(project)

    _assert_refused(result, link)
    assert _snapshot(home) == before
    assert not list((project / ".storycore").glob("journal.jsonl")), "a prompt was submitted"


@pytest.mark.parametrize("relpath", FILE_LINKS)
async def test_a_state_file_linked_outside_is_never_written_through(
    project: Path, home: Path, relpath: str
) -> None:
    (project / ".storycore").mkdir()
    link = _plant(project, relpath, home / ".bashrc")

    result = await _render(project)

    _assert_refused(result, link)
    assert (home / ".bashrc").read_bytes() == BASHRC
    assert link.is_symlink()


async def test_a_link_to_a_missing_file_outside_is_not_created(project: Path, home: Path) -> None:
    """A dangling link (thumbnail cache -> a file that does not exist yet) would create it."""
    (project / ".storycore" / "cache").mkdir(parents=True)
    link = _plant(project, ".storycore/cache/thumbs.sqlite", home / "victim" / "planted.sqlite")
    before = _snapshot(home)

    result = await _render(project)

    _assert_refused(result, link)
    assert _snapshot(home) == before


@pytest.mark.parametrize("relpath", [".storycore/lock", ".storycore/journal.jsonl"])
async def test_a_hard_link_to_a_file_outside_is_refused(
    project: Path, home: Path, relpath: str
) -> None:
    """A hard link has no link to follow, but writing it writes the other name's file."""
    (project / ".storycore").mkdir()
    link = project / relpath
    os.link(home / ".bashrc", link)

    result = await _render(project)

    assert result.rc == 3, result.output[-3000:]
    assert str(link) in result.stderr
    assert "hard link" in result.stderr
    assert (home / ".bashrc").read_bytes() == BASHRC


async def test_a_named_pipe_as_the_journal_does_not_hang_the_run(project: Path) -> None:
    (project / ".storycore").mkdir()
    fifo = project / ".storycore" / "journal.jsonl"
    os.mkfifo(fifo)

    result = await _render(project, limit_s=30)

    assert result.rc == 3, result.output[-3000:]
    assert str(fifo) in result.stderr
    assert "not a plain file" in result.stderr


async def test_a_link_to_a_file_inside_the_project_is_not_followed_either(project: Path) -> None:
    """StoryCore's own files are plain files: the journal is never a link, even one inside."""
    (project / ".storycore").mkdir()
    elsewhere = project / "notes.txt"
    elsewhere.write_text("my notes\n")
    link = _plant(project, ".storycore/journal.jsonl", elsewhere)

    result = await _render(project)

    _assert_refused(result, link)
    assert elsewhere.read_text() == "my notes\n"


async def test_folders_linked_inside_the_project_are_tolerated(project: Path) -> None:
    """A shot folder (and the state folder) may be a link to a folder inside the project."""
    kept = project / "kept" / "shot_01"
    kept.mkdir(parents=True)
    (project / "state").mkdir()
    _plant(project, "assets/images/generated/shot_01", kept)
    _plant(project, ".storycore", project / "state")

    result = await _render(project)

    assert result.rc == 0, result.output[-3000:]
    assert [p.name for p in kept.glob("*.png")] == ["shot_01_v1_r001.png"]
    assert (project / "assets/images/generated/shot_02/shot_02_v1_r001.png").is_file()
    assert (project / "state" / "journal.jsonl").is_file()


async def test_a_project_without_links_still_renders(project: Path) -> None:
    result = await _render(project)

    assert result.rc == 0, result.output[-3000:]
    for shot in ("shot_01", "shot_02"):
        folder = project / "assets/images/generated" / shot
        assert (folder / f"{shot}_v1_r001.png").is_file()
        assert (folder / f"{shot}_v1_r001.json").is_file()
    assert (project / ".storycore" / "journal.jsonl").is_file()
    assert list((project / ".storycore" / "metrics").glob("run-*.jsonl"))
