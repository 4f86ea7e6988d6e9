"""The thumbnail cache: `assets stats` shows it on its own line, `assets clean` ages it out as
one unit, and the two agree; counts in assets output are in words ("1 file", "2 files")."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from storycore.assets import (
    RetentionPolicy,
    asset_stats,
    cache_files,
    clean_assets,
    plan_clean,
    plural,
    temporary_files,
)
from storycore.review._thumbcache import ThumbCache

from ._project import build
from .test_cli import run

CACHE = ".storycore/cache"


def _age(folder: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    for path in folder.iterdir():
        os.utime(path, (then, then))


def test_plural() -> None:
    assert plural(0, "file") == "0 files"
    assert plural(1, "file") == "1 file"
    assert plural(2, "placeholder") == "2 placeholders"
    assert plural(1, "output prefix", "output prefixes") == "1 output prefix"
    assert plural(3, "output prefix", "output prefixes") == "3 output prefixes"
    assert plural(1200, "render") == "1,200 renders"


def test_an_open_thumbnail_cache_is_cache_not_temporary_and_goes_whole(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    with ThumbCache(project.root / CACHE) as cache:
        cache.put("k", b"\xff\xd8 jpeg")
        names = sorted(p.name for p in (project.root / CACHE).iterdir())
        assert names == ["thumbs.sqlite", "thumbs.sqlite-shm", "thumbs.sqlite-wal"]
        stats = asset_stats(project)
        assert stats.per_kind["cache"].count == 3
        assert stats.per_kind["temporary"].count == 0
        assert temporary_files(project) == []
        # Fresh: clean leaves it (a storyboard refresh wrote it a moment ago).
        assert plan_clean(project, RetentionPolicy()).removals == []
        # Only the write-ahead log is old: the unit is as young as its newest file.
        os.utime(project.root / CACHE / "thumbs.sqlite-wal", (1.0, 1.0))
        assert plan_clean(project, RetentionPolicy()).removals == []
        _age(project.root / CACHE, 25)
        report = clean_assets(project, RetentionPolicy())
    removed = [Path(r.path).name for r in report.removed]
    # All three, companions first: no write-ahead log may outlive its database.
    assert removed[-1] == "thumbs.sqlite" and sorted(removed[:-1]) == [
        "thumbs.sqlite-shm",
        "thumbs.sqlite-wal",
    ]
    assert {r.kind for r in report.removed} == {"cache"}
    assert "older than 24 h" in report.removed[0].reason
    assert cache_files(project) == []
    with ThumbCache(project.root / CACHE) as again:  # the next board makes a new one
        again.put("k", b"x")
        assert again.get("k") == b"x"


def test_size_cap_counts_the_cache_with_temporary_files(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    folder = project.root / CACHE
    folder.mkdir(parents=True)
    (folder / "thumbs.sqlite").write_bytes(b"d" * 2 * 1024 * 1024)
    (folder / "thumbs.sqlite-wal").write_bytes(b"w" * 1024)
    _age(folder, 2)
    policy = RetentionPolicy(temp_max_total_mb=1)
    assert sorted(Path(r.path).name for r in plan_clean(project, policy).removals) == [
        "thumbs.sqlite",
        "thumbs.sqlite-wal",
    ]


def test_stats_and_clean_agree_on_a_real_board_cache(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [True], "shot_02": [False, False]})
    root = str(project.root)
    board = run("board", "--project", root)
    assert board.returncode == 0, board.stderr
    cache = project.root / CACHE
    assert (cache / "thumbs.sqlite").is_file()
    count = len(list(cache.iterdir()))

    stats = run("assets", "stats", "--project", root)
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert lines[0].startswith("final        2 files ")
    assert lines[1].startswith("placeholder  1 file ")
    assert lines[2].startswith("temporary    0 files ")
    assert lines[3].startswith(f"cache        {plural(count, 'file')} ")
    assert "storyboard thumbnails" in lines[3]
    assert any(line.startswith("  shot_01      1 placeholder (") for line in lines)
    assert any(line.startswith("  shot_02      2 final renders (") for line in lines)
    assert f"would remove 0 of {plural(count, 'temporary or cache file')} now (0 B)" in stats.stdout
    assert "once older than 24 h" in stats.stdout
    body = json.loads(run("assets", "stats", "--project", root, "--json").stdout)
    assert body["per_kind"]["cache"]["count"] == count
    assert body["per_kind"]["temporary"]["count"] == 0
    assert body["clean_would_remove"]["cache"] == {"count": 0, "bytes": 0}

    fresh = run("assets", "clean", "--project", root)
    assert fresh.returncode == 0, fresh.stderr
    assert "Removed 0 project files" in fresh.stdout
    assert (cache / "thumbs.sqlite").is_file()

    _age(cache, 25)
    size = sum(p.stat().st_size for p in cache.iterdir())
    body = json.loads(run("assets", "stats", "--project", root, "--json").stdout)
    assert body["clean_would_remove"]["cache"] == {"count": count, "bytes": size}
    human = run("assets", "stats", "--project", root).stdout
    assert f"would remove {count} of {plural(count, 'temporary or cache file')} now" in human

    done = run("assets", "clean", "--project", root)
    assert done.returncode == 0, done.stderr
    assert f"Removed {plural(count, 'project file')}" in done.stdout
    assert "  cache       .storycore/cache/thumbs.sqlite  (cache, older than 24 h)" in done.stdout
    assert list(cache.iterdir()) == []
    after = run("assets", "stats", "--project", root)
    assert "cache        0 files " in after.stdout and "would remove" not in after.stdout
    assert run("board", "--project", root).returncode == 0  # the cache comes back


def test_counts_are_in_words(tmp_path: Path) -> None:
    project = build(tmp_path, {"shot_01": [False]})
    root = str(project.root)
    listed = run("assets", "list", "--project", root).stdout.splitlines()
    assert listed[-1] == "1 render, 1 active"
    verified = run("assets", "verify", "--project", root)
    assert verified.stdout.splitlines()[0] == "1 of 1 recorded render is intact"
    with (project.root / "storycore.toml").open("a") as handle:
        handle.write("\n[assets]\nkeep_newest = 1\n")
    part = project.root / "assets/images/generated/shot_01/.shot_01_v1_r002.png.ab12cd34.part"
    part.write_bytes(b"p")
    os.utime(part, (1.0, 1.0))
    done = run("assets", "clean", "--project", root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        "Removed 1 project file, 1 B; 0 manifest records dropped, 1 kept"
    )
    bad = run("assets", "clean", "--project", root, "--keep-newest", "0")
    assert bad.returncode == 2 and "(s)" not in bad.stderr
