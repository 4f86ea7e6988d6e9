"""list / stats / verify on real files in a copy of the example project."""

from __future__ import annotations

import os
from pathlib import Path

from storycore.assets import (
    asset_stats,
    cache_files,
    list_assets,
    temporary_files,
    verify_assets,
)
from storycore.manifest import active_record, set_shot_status
from storycore.project import load_project, save_project

from ._project import add_render, build


def test_list_shows_every_render_with_active_flag(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True, False, False], "shot_02": [False]})
    assets = list_assets(project)
    assert [(a.shot_id, a.version, a.render) for a in assets] == [
        ("shot_01", 1, 1),
        ("shot_01", 1, 2),
        ("shot_01", 1, 3),
        ("shot_02", 1, 1),
    ]
    assert [a.active for a in assets] == [False, False, True, True]
    assert [a.placeholder for a in assets] == [True, False, False, False]
    first = assets[0]
    on_disk = (project.root / first.path).stat().st_size
    sidecar = (project.root / first.path).with_suffix(".json").stat().st_size
    assert first.exists and first.size == on_disk and first.disk_bytes == on_disk + sidecar
    assert first.path == "assets/images/generated/shot_01/shot_01_v1_r001.png"


def test_stats_per_kind_and_shot_including_temporary(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True, False], "shot_03": [False, False]})
    part = project.root / "assets/images/generated/shot_01/.shot_01_v1_r003.png.ab12cd34.part"
    part.write_bytes(b"x" * 100)
    cache = project.root / ".storycore/cache/object_info.json"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"y" * 50)
    (project.root / "assets/images/generated/shot_03/notes.txt").write_text("mine")
    stats = asset_stats(project)
    sizes = {a.asset_id: a.disk_bytes for a in list_assets(project)}
    assert stats.per_kind["final"].count == 3
    assert stats.per_kind["placeholder"].count == 1
    assert stats.per_kind["placeholder"].bytes == sizes["shot_01-v1-r001"]
    assert stats.per_kind["temporary"].count == 1 and stats.per_kind["temporary"].bytes == 100
    assert stats.per_kind["cache"].count == 1 and stats.per_kind["cache"].bytes == 50
    assert stats.per_shot["shot_03"]["final"].count == 2
    assert stats.per_shot["shot_01"]["placeholder"].count == 1
    assert stats.unknown.count == 1 and stats.unknown.bytes == 4
    assert stats.total_bytes == sum(sizes.values()) + 150 + 4
    assert {t.reason for t in temporary_files(project)} == {"partial download"}
    assert [c.path for c in cache_files(project)] == [".storycore/cache/object_info.json"]


def test_verify_clean_project(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False, False], "shot_02": [True]})
    report = verify_assets(project)
    assert report.clean and report.checked == 3 and report.ok == 3
    assert report.unknown == [] and report.temporary == []


def test_verify_catches_a_flipped_byte_missing_and_unknown_files(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False, False], "shot_02": [False]})
    assets = list_assets(project)
    target = project.root / assets[0].path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit different
    target.write_bytes(bytes(data))
    os.unlink(project.root / assets[2].path)
    stray = project.root / "assets/images/generated/shot_02/holiday.jpg"
    stray.write_bytes(b"not ours")
    orphan = project.root / "assets/images/generated/shot_02/shot_02_v1_r007.png"
    orphan.write_bytes(b"left by a crash")

    report = verify_assets(project)
    assert not report.clean
    assert [(p.asset_id, p.problem) for p in report.changed] == [("shot_01-v1-r001", "changed")]
    assert "sha256" in report.changed[0].detail
    assert [(p.asset_id, p.problem) for p in report.missing] == [("shot_02-v1-r001", "missing")]
    assert {(f.path.rsplit("/", 1)[1], f.reason) for f in report.unknown} == {
        ("holiday.jpg", "unknown"),
        ("shot_02_v1_r007.png", "orphan render"),
    }
    assert report.ok == 1


def test_verify_reports_malformed_and_escaping_records(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    items = project.data["asset_manifest"]["generated_images"]
    evil = dict(items[0], asset_id="evil", path="assets/images/generated/../../../x.png")
    items.extend([evil, {"asset_id": "half"}, "nonsense"])
    save_project(project)
    report = verify_assets(load_project(project.root))
    assert report.checked == 4 and report.ok == 1
    assert [p.problem for p in report.problems] == ["invalid"] * 3
    assert len(list_assets(load_project(project.root))) == 1


def test_active_flag_follows_shots_index(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_04": [False, False]})
    first = list_assets(project)[0]
    set_shot_status(project, "shot_04", "rendered", active_asset=first.asset_id)
    save_project(project)
    reloaded = load_project(project.root)
    assert [a.active for a in list_assets(reloaded)] == [True, False]
    record = active_record(reloaded, "shot_04")
    assert record is not None and record.asset_id == first.asset_id
    add_render(reloaded, "shot_04")
    assert [a.active for a in list_assets(reloaded)] == [False, False, True]
