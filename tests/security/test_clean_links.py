"""`storycore assets clean` never deletes through a link that leaves the project: `assets`, the
generated folder or a shot folder linked elsewhere gets nothing deleted there, and the records
of renders it could not remove stay in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.assets._project import build
from tests.security._support import run_storycore

GEN = "assets/images/generated"


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("linked", ["assets", "assets/images", GEN, f"{GEN}/shot_01"])
async def test_a_folder_linking_out_gets_nothing_deleted(tmp_path: Path, linked: str) -> None:
    project = build(tmp_path, {"shot_01": [False, False, False]})
    outside = tmp_path / "outside"
    (project.root / linked).rename(outside)
    (project.root / linked).symlink_to(outside, target_is_directory=True)
    before = _listing(outside)
    result = await run_storycore(
        "assets", "clean", "-p", str(project.root), "--keep-newest", "1", limit_s=60
    )
    result.assert_bounded(seconds=60)
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert result.rc == 7, result.output
    assert "outside the project" in result.stderr
    assert _listing(outside) == before
    data = json.loads((project.root / "project.json").read_text(encoding="utf-8"))
    assert len(data["asset_manifest"]["generated_images"]) == 3  # nothing dropped
