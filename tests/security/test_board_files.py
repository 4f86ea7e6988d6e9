"""`storycore board` deletes only the pages it wrote and never writes or deletes through a link
that leaves the project (the `storyboard/` folder, the thumbnail cache and its files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storycore.project import Project, load_project, save_project
from storycore.review._board import write_board
from tests.board._project import add_render, copy_example
from tests.security._support import run_storycore

PAGES_RECORD = ".storycore-pages.json"  # the board's record of the pages it wrote


def _project(tmp_path: Path) -> Project:
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01")
    add_render(project, "shot_02", placeholder=True)
    save_project(project)
    return load_project(project.root)


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("the user's own notes\n")
    (outside / "board-2.jpg").write_bytes(b"a photo the user named board-2")
    (outside / "board.png").write_bytes(b"a sketch")
    return outside


async def test_a_users_board_files_survive_storycore_board(tmp_path: Path) -> None:
    project = _project(tmp_path)
    folder = project.root / "storyboard"
    folder.mkdir()
    mine = {
        "board_sketch.png": b"the director's sketch",
        "board-final.jpg": b"the approved frame",
        "board-old.png": b"an older idea",
        "board.png": b"not made by StoryCore",
    }
    for name, data in mine.items():
        (folder / name).write_bytes(data)
    result = await run_storycore("board", "-p", str(project.root), limit_s=60)
    assert result.rc == 0, result.output
    result.assert_bounded(seconds=60)
    for name, data in mine.items():
        assert (folder / name).read_bytes() == data, name
    assert (folder / "board.jpg").is_file() and (folder / "board.html").is_file()


def test_stale_pages_go_only_when_recorded_and_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storycore.review._board as board

    project = _project(tmp_path)
    folder = project.root / "storyboard"
    monkeypatch.setattr(board, "SHEET_PAGE", 2)
    first = write_board(project)
    assert [p.name for p in first.pages] == [
        "board.jpg",
        "board-2.jpg",
        "board-3.jpg",
        "board-4.jpg",
    ]
    record = json.loads((folder / PAGES_RECORD).read_text())
    assert set(record["pages"]) == {"board.jpg", "board-2.jpg", "board-3.jpg", "board-4.jpg"}
    # the user replaced page 3 with their own picture; a forged record lists their sketch
    (folder / "board-3.jpg").write_bytes(b"my own page 3")
    sketch = folder / "board_sketch.png"
    sketch.write_bytes(b"sketch")
    record["pages"]["board_sketch.png"] = hashlib.sha256(b"sketch").hexdigest()
    record["pages"]["../outside.txt"] = hashlib.sha256(b"x").hexdigest()
    (folder / PAGES_RECORD).write_text(json.dumps(record))
    (tmp_path / "outside.txt").write_bytes(b"x")

    monkeypatch.setattr(board, "SHEET_PAGE", 96)
    again = write_board(load_project(project.root))
    assert [p.name for p in again.pages] == ["board.jpg"]
    assert not (folder / "board-2.jpg").exists() and not (folder / "board-4.jpg").exists()
    assert (folder / "board-3.jpg").read_bytes() == b"my own page 3"
    assert sketch.read_bytes() == b"sketch"
    assert (tmp_path / "outside.txt").read_bytes() == b"x"
    assert set(json.loads((folder / PAGES_RECORD).read_text())["pages"]) == {"board.jpg"}


@pytest.mark.parametrize("garbage", [b"", b"{", b"[1, 2]", b'{"pages": [1]}', b"\xff\xfe"])
def test_a_damaged_pages_record_deletes_nothing(tmp_path: Path, garbage: bytes) -> None:
    project = _project(tmp_path)
    folder = project.root / "storyboard"
    folder.mkdir()
    (folder / PAGES_RECORD).write_bytes(garbage)
    (folder / "board-2.jpg").write_bytes(b"someone's")
    write_board(project)
    assert (folder / "board-2.jpg").read_bytes() == b"someone's"


async def test_a_storyboard_folder_linking_out_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path)
    outside = _outside(tmp_path)
    before = _listing(outside)
    link = project.root / "storyboard"
    link.symlink_to(outside, target_is_directory=True)
    result = await run_storycore("board", "-p", str(project.root), limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 3, result.output
    message = " ".join(result.stderr.split())
    assert str(link) in message and str(outside) in message, message
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert _listing(outside) == before


@pytest.mark.parametrize("linked", [".storycore", ".storycore/cache"])
async def test_a_thumbnail_cache_folder_linking_out_is_refused(tmp_path: Path, linked: str) -> None:
    project = _project(tmp_path)
    outside = _outside(tmp_path)
    before = _listing(outside)
    link = project.root / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    result = await run_storycore("board", "-p", str(project.root), limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 3, result.output
    message = " ".join(result.stderr.split())
    assert str(link) in message and "thumbnail cache" in message, message
    assert _listing(outside) == before


@pytest.mark.parametrize("name", ["thumbs.sqlite", "thumbs.sqlite-wal", "thumbs.sqlite-shm"])
async def test_a_cache_file_that_is_a_link_is_never_opened(tmp_path: Path, name: str) -> None:
    project = _project(tmp_path)
    outside = _outside(tmp_path)
    target = outside / "keep.txt"
    before = _listing(outside)
    cache = project.root / ".storycore" / "cache"
    cache.mkdir(parents=True)
    (cache / name).symlink_to(target)
    result = await run_storycore("board", "-p", str(project.root), limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 3, result.output
    assert str(cache / name) in " ".join(result.stderr.split()), result.stderr
    assert _listing(outside) == before
    assert (cache / name).is_symlink()
