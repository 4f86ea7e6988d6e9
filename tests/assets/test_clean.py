"""Retention: the right versions stay, a dry run changes nothing, an interruption is safe."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storycore.assets import (
    RetentionPolicy,
    clean_assets,
    list_assets,
    load_retention_policy,
    verify_assets,
)
from storycore.errors import ConfigError
from storycore.manifest import set_shot_status
from storycore.project import load_project, save_project

from ._project import add_render, build, snapshot

GEN = "assets/images/generated"


def _ids(project_root: Path) -> list[str]:
    return [a.asset_id for a in list_assets(load_project(project_root))]


def test_keep_newest_keeps_the_newest_and_the_active(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False] * 4, "shot_02": [False] * 4})
    # shot_02: the user promoted its first render back to active
    set_shot_status(project, "shot_02", "rendered", active_asset="shot_02-v1-r001")
    save_project(project)
    report = clean_assets(load_project(project.root), RetentionPolicy(keep_newest=2))
    assert _ids(project.root) == [
        "shot_01-v1-r003",
        "shot_01-v1-r004",
        "shot_02-v1-r001",
        "shot_02-v1-r003",
        "shot_02-v1-r004",
    ]
    gone = {"shot_01_v1_r001", "shot_01_v1_r002", "shot_02_v1_r002"}
    assert {Path(r.path).stem for r in report.removed} == gone
    assert {Path(r.path).suffix for r in report.removed} == {".png", ".json"}
    for stem in gone:
        shot = stem[:7]
        assert not (project.root / GEN / shot / f"{stem}.png").exists()
        assert not (project.root / GEN / shot / f"{stem}.json").exists()
    assert report.records_dropped == 3 and report.manifest_updated
    assert report.freed_bytes == sum(r.bytes for r in report.removed) > 0
    assert verify_assets(load_project(project.root)).clean


def test_default_policy_keeps_every_real_render(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False] * 3})
    before = snapshot(project.root)
    report = clean_assets(project, RetentionPolicy())
    assert report.removed == [] and not report.manifest_updated
    assert snapshot(project.root) == before


def test_placeholders_go_once_a_real_render_exists(tmp_path: Path) -> None:
    project = build(
        tmp_path,
        {
            "shot_01": [True, True, False],  # real render active: both placeholders go
            "shot_02": [True, True],  # no real render: placeholders stay
            "shot_03": [False, True],  # the placeholder is active: it stays, the real one too
        },
    )
    clean_assets(project, RetentionPolicy())
    assert _ids(project.root) == [
        "shot_01-v1-r003",
        "shot_02-v1-r001",
        "shot_02-v1-r002",
        "shot_03-v1-r001",
        "shot_03-v1-r002",
    ]
    keep_them = build(tmp_path / "again", {"shot_01": [True, False]})
    clean_assets(keep_them, RetentionPolicy(remove_placeholders=False))
    assert _ids(keep_them.root) == ["shot_01-v1-r001", "shot_01-v1-r002"]


def test_placeholder_kept_when_the_real_file_is_gone(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True, False]})
    os.unlink(project.root / GEN / "shot_01/shot_01_v1_r002.png")
    clean_assets(project, RetentionPolicy())
    # the real render is recorded (and active) but its file is lost: the placeholder stays
    assert _ids(project.root) == ["shot_01-v1-r001", "shot_01-v1-r002"]
    assert (project.root / GEN / "shot_01/shot_01_v1_r001.png").exists()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True, False, False, False], "shot_05": [False] * 3})
    old = project.root / GEN / "shot_01/.shot_01_v1_r009.png.deadbeef.part"
    old.write_bytes(b"p" * 10)
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    before = snapshot(project.root)
    report = clean_assets(project, RetentionPolicy(keep_newest=1), dry_run=True)
    assert snapshot(project.root) == before
    kinds = sorted((r.kind, Path(r.path).name) for r in report.removed)
    assert ("temporary", old.name) in kinds
    assert ("placeholder", "shot_01_v1_r001.png") in kinds
    assert ("final", "shot_05_v1_r002.png") in kinds
    assert report.records_dropped == 5 and not report.manifest_updated
    assert report.freed_bytes > 0


def test_interrupted_clean_leaves_a_loadable_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = build(tmp_path, {"shot_01": [False] * 4, "shot_02": [True, False]})
    real_unlink = os.unlink
    calls: list[str] = []

    def dying_unlink(path: object, *args: object, **kwargs: object) -> None:
        calls.append(str(path))
        if len(calls) >= 2:
            raise RuntimeError("power cut")
        real_unlink(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", dying_unlink)
    with pytest.raises(RuntimeError, match="power cut"):
        clean_assets(project, RetentionPolicy(keep_newest=1))
    monkeypatch.setattr(os, "unlink", real_unlink)

    reloaded = load_project(project.root)  # loads: the manifest was written whole, first
    assert _ids(project.root) == ["shot_01-v1-r004", "shot_02-v1-r002"]
    assert verify_assets(reloaded).clean  # every remaining record points at an intact file
    leftovers = verify_assets(reloaded).unknown
    assert leftovers and {f.reason for f in leftovers} == {"orphan render"}

    # the next clean finishes the job (orphans past their grace period)
    report = clean_assets(reloaded, RetentionPolicy(orphan_grace_minutes=0))
    assert {r.kind for r in report.removed} == {"orphan"}
    assert verify_assets(load_project(project.root)).unknown == []


def test_fresh_orphans_are_left_for_a_running_render(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    fresh = project.root / GEN / "shot_01/shot_01_v1_r002.png"
    fresh.write_bytes(b"being recorded right now")
    clean_assets(project, RetentionPolicy())
    assert fresh.exists()
    os.utime(fresh, (time.time() - 3600,) * 2)
    clean_assets(project, RetentionPolicy())
    assert not fresh.exists()


def test_temporary_files_by_age_and_total_size(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    cache = project.root / ".storycore/cache"
    cache.mkdir(parents=True)
    now = time.time()
    ages = {"a.bin": 10 * 3600, "b.bin": 5 * 3600, "c.bin": 2 * 3600, "new.bin": 10}
    for name, age in ages.items():
        (cache / name).write_bytes(b"z" * 1024 * 1024)
        os.utime(cache / name, (now - age,) * 2)
    stale_part = project.root / GEN / "shot_01/.x.png.1a2b3c4d.part"
    stale_part.write_bytes(b"q")
    os.utime(stale_part, (now - 48 * 3600,) * 2)
    policy = RetentionPolicy(temp_max_age_hours=24, temp_max_total_mb=2)
    report = clean_assets(project, policy, now=now)
    removed = sorted((Path(r.path).name, r.kind) for r in report.removed)
    assert removed == [
        (".x.png.1a2b3c4d.part", "temporary"),
        ("a.bin", "cache"),
        ("b.bin", "cache"),
    ]
    assert sorted(p.name for p in cache.iterdir()) == ["c.bin", "new.bin"]
    assert _ids(project.root) == ["shot_01-v1-r001"]


def test_records_outside_the_generated_folder_are_never_touched(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False, False]})
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"do not delete")
    items = project.data["asset_manifest"]["generated_images"]
    items.insert(
        0, dict(items[0], asset_id="evil", path="assets/images/generated/../../../precious.png")
    )
    save_project(project)
    clean_assets(load_project(project.root), RetentionPolicy(keep_newest=1))
    assert outside.read_bytes() == b"do not delete"
    assert _ids(project.root) == ["shot_01-v1-r002"]
    assert load_project(project.root).data["asset_manifest"]["generated_images"][0]["asset_id"] == (
        "evil"
    )


def test_policy_from_storycore_toml(tmp_path: Path) -> None:
    (tmp_path / "storycore.toml").write_text(
        "[render]\nsteps = 4\n[assets]\nkeep_newest = 3\ntemp_max_total_mb = 100\n"
    )
    policy = load_retention_policy(tmp_path)
    assert policy.keep_newest == 3 and policy.temp_max_total_bytes == 100 * 1024 * 1024
    assert policy.remove_placeholders is True
    assert load_retention_policy(tmp_path, {"keep_newest": 5}).keep_newest == 5
    assert load_retention_policy(tmp_path / "nowhere") == RetentionPolicy()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[assets]\nkeep_newest = 0\n", "assets.keep_newest"),
        ("[assets]\ntemp_max_age_hours = 'long'\n", "assets.temp_max_age_hours"),
        ("[assets]\nkeep_everything = true\n", "assets.keep_everything"),
        ("assets = 3\n", "assets in project"),
    ],
)
def test_bad_policy_values_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    (tmp_path / "storycore.toml").write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_retention_policy(tmp_path)
    assert caught.value.where is not None and caught.value.where.startswith(field)
    assert "storycore.toml" in caught.value.where


def test_new_render_after_clean_gets_a_fresh_number(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_06": [False] * 3})
    clean_assets(project, RetentionPolicy(keep_newest=1))
    reloaded = load_project(project.root)
    record = add_render(reloaded, "shot_06")
    assert record.render == 4


def test_a_symlinked_shot_folder_pointing_outside_is_left_alone(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False, False]})
    elsewhere = tmp_path / "elsewhere"
    shot_dir = project.root / GEN / "shot_01"
    shot_dir.rename(elsewhere)
    shot_dir.symlink_to(elsewhere, target_is_directory=True)
    report = clean_assets(load_project(project.root), RetentionPolicy(keep_newest=1))
    assert (elsewhere / "shot_01_v1_r001.png").exists()
    assert report.errors and all("outside the project" in e for e in report.errors)


def test_a_generated_folder_linking_out_of_the_project_is_left_alone(tmp_path: Path) -> None:
    # issue 15: no delete is carried through a link that leaves the project (renders are not
    # written through one either), so a generated folder on another disk is not cleaned
    project = build(tmp_path, {"shot_01": [False, False, False]})
    big_disk = tmp_path / "big_disk"
    generated = project.root / GEN
    generated.rename(big_disk)
    generated.symlink_to(big_disk, target_is_directory=True)
    report = clean_assets(load_project(project.root), RetentionPolicy(keep_newest=1))
    assert report.errors and all("outside the project" in e for e in report.errors)
    assert len(list((big_disk / "shot_01").iterdir())) == 6
    assert report.records_dropped == 0


def test_approved_renders_are_always_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    project = build(tmp_path, {"shot_01": [False] * 4})
    approve = [sys.executable, "-m", "storycore", "assets", "approve", "shot_01-v1-r001"]
    result = subprocess.run(
        [*approve, "--project", str(project.root)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    unknown = subprocess.run(
        [*approve, "nope-v9-r009", "--project", str(project.root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 7 and "nope-v9-r009" in unknown.stderr
    clean_assets(load_project(project.root), RetentionPolicy(keep_newest=1))
    assert _ids(project.root) == ["shot_01-v1-r001", "shot_01-v1-r004"]
    assert [a.approved for a in list_assets(load_project(project.root))] == [True, False]
