"""Odd values in manifest records (a newer version's `timings` key, numbers written as text, lone
surrogates, values of the wrong type, items that are not objects) and a tampered thumbnail
cache: `storycore board` and every `assets` command tolerate them or name them, never a
traceback."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from storycore.project import load_project, save_project
from tests.board._page import read_page
from tests.board._project import add_render, copy_example
from tests.security._support import run_storycore

GEN = "assets/images/generated"


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")  # \ud800 written as escapes


def _odd_project(tmp_path: Path) -> Path:
    project = load_project(copy_example(tmp_path))
    for shot_id in ("shot_01", "shot_02", "shot_03", "shot_04", "shot_05", "shot_06"):
        add_render(project, shot_id)
    add_render(project, "shot_06")  # a second render, so `clean --keep-newest 1` has work
    save_project(project)

    def odd(data: dict[str, Any]) -> None:
        items = {i["asset_id"]: i for i in data["asset_manifest"]["generated_images"]}
        items["shot_01-v1-r001"]["timings"] = {"execution": 2.5, "gpu_temp_c": 71, "total": 3}
        items["shot_01-v1-r001"]["x_from_the_future"] = {"nested": [1, 2]}
        items["shot_02-v1-r001"].update(
            version="1",
            render="1",
            size="127",
            width="64",
            height=36.0,
            seed="42",
            timings={"execution": "3.5", "queued": "soon"},
        )
        items["shot_03-v1-r001"].update(
            checkpoint="model\ud800.safetensors",
            created_at="2026-12-01T10:00:00\udfffZ",
            models=["lora\udc00", 7, None],
            template="tmpl\udbff",
        )
        items["shot_04-v1-r001"]["sha256"] = "abc\ud800"  # names the file: not guessed
        items["shot_05-v1-r001"].update(
            version="abc",
            placeholder="no",
            approved="yes",
            models="not a list",
            template=[1],
            timings="fast",
            created_at=5,
        )
        items["shot_06-v1-r001"].update(path=7, seed={"a": 1}, width=-3)
        data["asset_manifest"]["generated_images"] += [42, "a string", None, []]
        data["shots_index"]["shot_07"] = "not an object"

    _edit(project.root / "project.json", odd)
    return project.root


def _clean(result_output: str) -> None:
    assert "Traceback" not in result_output, result_output
    assert "unexpected" not in result_output, result_output


async def test_odd_record_values_do_not_crash_the_board(tmp_path: Path) -> None:
    root = _odd_project(tmp_path)
    result = await run_storycore("board", "-p", str(root), limit_s=60)
    result.assert_bounded(seconds=60)
    _clean(result.output)
    assert result.rc == 0, result.output
    page = read_page((root / "storyboard" / "board.html").read_text(encoding="utf-8"))
    first, second, third = (page.panels[f"shot_0{n}"] for n in (1, 2, 3))
    assert first.row("Status") == "rendered" and first.row("Execution") == "2.5 s on the server"
    assert second.row("Status") == "rendered" and second.row("Seed") == "42"
    assert second.row("Execution") == "3.5 s on the server" and not second.has("Queue wait")
    assert third.row("Checkpoint") == "model\ufffd.safetensors"
    assert third.row("Template") == "tmpl\ufffd"
    for unreadable in ("shot_04", "shot_05"):  # identity fields that cannot be read
        assert page.panels[unreadable].row("Status") == "not rendered yet"
    assert page.panels["shot_06"].row("Status") == "rendered"  # its newest render is fine


async def test_a_tampered_thumbnail_cache_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    root = _odd_project(tmp_path)
    first = await run_storycore("board", "-p", str(root), limit_s=60)
    assert first.rc == 0, first.output
    hostile = [
        [1, {"cfg": "x", "steps": "<b>", "samplers": "many", "models": [[1, 2, 3]]}],
        [1, {"positive": 5, "workflow": True, "models": "abc", "unknown": 1}],
        [1, {"denoise": [], "seed": "s", "width": "w", "models": [["LoRA", None, {}]]}],
        [1, []],
        "not json",
    ]
    with sqlite3.connect(root / ".storycore/cache/thumbs.sqlite") as db:
        keys = [row[0] for row in db.execute("SELECT key FROM details")]
        assert keys
        for index, key in enumerate(keys):
            text = hostile[index % len(hostile)]
            db.execute(
                "UPDATE details SET json = ? WHERE key = ?",
                (text if isinstance(text, str) else json.dumps(text), key),
            )
    again = await run_storycore("board", "-p", str(root), limit_s=60)
    again.assert_bounded(seconds=60)
    _clean(again.output)
    assert again.rc == 0, again.output
    page = read_page((root / "storyboard" / "board.html").read_text(encoding="utf-8"))
    assert page.panels["shot_01"].row("Status") == "rendered"


async def test_odd_record_values_do_not_crash_the_assets_commands(tmp_path: Path) -> None:
    root = _odd_project(tmp_path)
    hours_ago = time.time() - 2 * 3600  # past the orphans' grace period
    for path in (root / GEN).rglob("*"):
        os.utime(path, (hours_ago, hours_ago))
    expected = {
        ("assets", "list"): 0,
        ("assets", "list", "--json"): 0,
        ("assets", "stats"): 0,
        ("assets", "stats", "--json"): 0,
        ("assets", "verify"): 7,
        ("assets", "verify", "--json"): 7,
        ("assets", "clean", "--dry-run"): 0,
        ("assets", "clean", "--keep-newest", "1", "--json"): 0,
    }
    outputs: dict[tuple[str, ...], str] = {}
    for args, rc in expected.items():
        result = await run_storycore(*args, "-p", str(root), limit_s=60)
        result.assert_bounded(seconds=60)
        _clean(result.output)
        assert result.rc == rc, (args, result.output)
        outputs[args] = result.stdout
    listed = json.loads(outputs[("assets", "list", "--json")])["assets"]
    by_id = {a["asset_id"]: a for a in listed}
    assert by_id["shot_02-v1-r001"]["version"] == 1 and by_id["shot_02-v1-r001"]["size"] == 127
    assert "shot_04-v1-r001" not in by_id and "shot_05-v1-r001" not in by_id
    verify = json.loads(outputs[("assets", "verify", "--json")])
    invalid = " ".join(p["detail"] for p in verify["changed"])
    for name in ("sha256", "version", "path"):
        assert name in invalid, invalid
    # unreadable records and the files they name (or may name) stay, not taken for orphans
    assert "orphan render" not in outputs[("assets", "verify")]
    cleaned = json.loads(outputs[("assets", "clean", "--keep-newest", "1", "--json")])
    assert cleaned["removed"] == [] and cleaned["records_dropped"] == 0, cleaned
    for shot in ("shot_04", "shot_05", "shot_06"):
        assert (root / GEN / shot / f"{shot}_v1_r001.png").is_file(), shot
        assert (root / GEN / shot / f"{shot}_v1_r001.json").is_file(), shot
    kept = json.loads((root / "project.json").read_text(encoding="utf-8"))
    items = kept["asset_manifest"]["generated_images"]
    assert len(items) == 11  # 7 records and 4 odd items, all kept as they were
    assert items[0]["timings"]["gpu_temp_c"] == 71


async def test_lone_surrogates_in_the_storyboard_do_not_crash_the_board(tmp_path: Path) -> None:
    root = copy_example(tmp_path)

    def odd_board(data: dict[str, Any]) -> None:
        data["shots"][0]["title"] = "bad\ud800title"
        data["shots"][1]["description"] = "lone \udcff low"

    _edit(root / "storyboard.json", odd_board)
    _edit(root / "project.json", lambda data: data.update(title="Title \udfff"))
    result = await run_storycore("board", "-p", str(root), limit_s=60)
    result.assert_bounded(seconds=60)
    _clean(result.output)
    assert result.rc == 0, result.output
    text = (root / "storyboard" / "board.html").read_text(encoding="utf-8")  # valid UTF-8
    assert "bad\ufffdtitle" in text and "lone \ufffd low" in text and "Title \ufffd" in text
