"""`storycore assets clean` removes only the temporary files StoryCore makes (named by its exact
patterns, in the places it writes them, old enough), never a user's `*.part` or `.*.tmp`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storycore.assets import RetentionPolicy, clean_assets, temporary_files
from storycore.project import load_project
from tests.assets._project import build
from tests.security._support import run_storycore

GEN = "assets/images/generated"
USERS = [
    "assets/notes.part",
    "assets/images/.draft.tmp",
    f"{GEN}/shot_01/notes.part",
    f"{GEN}/shot_01/.draft.tmp",
    f"{GEN}/shot_01/.layout.psd.1a2b3c4d.tmp",  # our pattern, but StoryCore never writes a .psd
    f"{GEN}/shot_01/.shot_01_v1_r002.png.ABCDEF12.part",  # upper-case: not our marker
    f"{GEN}/shot_01/.shot_01_v1_r002.png.1a2b3c.part",  # six digits: not our marker
    "assets/images/.x.png.1a2b3c4d.part",  # StoryCore downloads only into its own folders
    ".notes.md.0123abcd.tmp",
    "storyboard/.sketch.png.0123abcd.tmp",
    "storyboard/draft.part",
]
OURS = [
    f"{GEN}/shot_01/.shot_01_v1_r002.png.1a2b3c4d.tmp",  # an interrupted atomic write
    f"{GEN}/shot_01/.shot_01_v1_r002.json.0badf00d.tmp",
    f"{GEN}/shot_01/.ComfyUI_00001_.png.0f0f0f0f.part",  # an interrupted /view download
    ".project.json.deadbeef.tmp",
    ".storyboard.json.12345678.tmp",
    ".storycore/.diagnostics.jsonl.89abcdef.tmp",
    "storyboard/.board.html.cafe0123.tmp",
    "storyboard/.board-2.jpg.00ff00ff.tmp",
]


def _plant(root: Path, names: list[str], age_s: float) -> None:
    then = time.time() - age_s
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (then, then))


async def test_a_users_part_and_tmp_files_survive_assets_clean(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    _plant(project.root, USERS + OURS, age_s=48 * 3600)
    result = await run_storycore("assets", "clean", "-p", str(project.root), limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output
    for name in USERS:
        assert (project.root / name).read_bytes() == b"x" * 100, name
    for name in OURS:
        assert not (project.root / name).exists(), name


def test_only_our_temporary_files_are_listed_and_only_when_old(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    _plant(project.root, USERS + OURS, age_s=600)
    listed = sorted(f.path for f in temporary_files(project))
    assert listed == sorted(OURS)
    # ten minutes old: kept under the default policy (24 h), and by the size cap (too fresh
    # only below five minutes, but 800 bytes fit the cap)
    report = clean_assets(load_project(project.root), RetentionPolicy())
    assert [r for r in report.removed if r.kind == "temporary"] == []
    assert all((project.root / name).exists() for name in OURS)
