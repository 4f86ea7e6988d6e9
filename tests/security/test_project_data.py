"""Hostile or odd project data: a person's edit during a render, deep nesting, lone surrogates,
odd manifest values, special files planted as ``project.json``.

Each attack runs through the real CLI in a bounded child (or the real engine against a real
emulator on loopback) on a real project folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import EngineEvent, ImageEngine, Notice, PanelDone, RenderRequest
from storycore.manifest import records
from storycore.project import init_project, load_project
from tests.engine.conftest import Recorder, fast_settings, make_project
from tests.security._support import ChildResult, run_storycore


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _one_paragraph_error(result: ChildResult, *names: str) -> str:
    """The child failed with one ``error:`` paragraph naming ``names``, no traceback."""
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _warnings(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings for people: engine notices, or log records where no sink is wired."""
    notices = [n.text for n in recorder.of(Notice) if n.level == "warning"]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return notices + logged


# ----------------------------------------------------------------- a person's edit mid-run
async def test_an_edit_made_during_a_render_survives_the_runs_saves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_project(tmp_path, 4)
    project_file = root / "project.json"
    edited: list[str] = []

    def person(data: dict[str, Any]) -> None:
        data["notes"] = "keep me"
        data["config"]["global_seed"] = 4242
        data["coherence_anchors"]["palette_id"] = "PALETTE_WARM_07"
        data["generation_status"]["image_generation"] = "frozen by hand"  # both change it

    def hook(event: EngineEvent) -> None:
        if isinstance(event, PanelDone) and not edited:
            edited.append(event.shot_id)
            _edit(project_file, person)

    recorder = Recorder(hook)
    async with Emulator(EmulatorOptions(step_seconds=0.02)) as emu:
        summary = await ImageEngine(fast_settings(), on_event=recorder).render(
            RenderRequest(root, backends=(emu.url,))
        )
    assert summary.counts["rendered"] == 4 and edited

    saved = json.loads(project_file.read_text(encoding="utf-8"))
    assert saved["notes"] == "keep me"
    assert saved["config"]["global_seed"] == 4242
    assert saved["coherence_anchors"]["palette_id"] == "PALETTE_WARM_07"
    assert saved["generation_status"]["image_generation"] == "frozen by hand"
    project = load_project(root)  # still a valid project, with every render recorded
    assert sorted(r.shot_id for r in records(project)) == [f"shot_0{n}" for n in range(1, 5)]
    for record in records(project):
        assert project.data["shots_index"][record.shot_id]["active_asset"] == record.asset_id
        assert project.data["shots_index"][record.shot_id]["status"] == "rendered"
    conflict = [w for w in _warnings(recorder, caplog) if "generation_status" in w]
    assert conflict and "frozen by hand" in conflict[0] and "done" in conflict[0], conflict


async def test_an_edit_that_is_not_valid_json_is_left_alone_and_merged_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_project(tmp_path, 3)
    project_file = root / "project.json"
    before = json.loads(project_file.read_text(encoding="utf-8"))
    half_typed = '{"schema_version": "1.0", "project_id": '

    def hook(event: EngineEvent) -> None:
        if isinstance(event, PanelDone) and not project_file.read_text().startswith(half_typed):
            project_file.write_text(half_typed, encoding="utf-8")

    recorder = Recorder(hook)
    async with Emulator(EmulatorOptions(step_seconds=0.01)) as emu:
        await ImageEngine(fast_settings(), on_event=recorder).render(
            RenderRequest(root, backends=(emu.url,))
        )
        assert project_file.read_text(encoding="utf-8") == half_typed  # not overwritten
        said = [w for w in _warnings(recorder, caplog) if "left it as it is" in w]
        assert said and "project.json" in said[0] and "journal" in said[0], said

        # The person finishes the edit; the next run records the panels from the journal.
        project_file.write_text(json.dumps({**before, "notes": "rewritten by hand"}))
        again = await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
    assert again.counts["skipped"] == 3, again.to_dict()
    project = load_project(root)
    assert project.data["notes"] == "rewritten by hand"
    assert len(records(project)) == 3


async def test_a_short_commands_save_merges_an_edit_made_after_it_loaded(tmp_path: Path) -> None:
    """The short commands save through the same merge (unit level: load, edit on disk, save)."""
    from storycore.project import save_project

    root = init_project("Short", tmp_path)
    project = load_project(root)
    project.data["shots_index"]["shot_01"]["status"] = "rendered"  # this process's change
    _edit(root / "project.json", lambda d: d.update(notes="typed meanwhile"))
    warnings = save_project(project)
    saved = json.loads((root / "project.json").read_text())
    assert saved["notes"] == "typed meanwhile" and warnings == []
    assert saved["shots_index"]["shot_01"]["status"] == "rendered"


# ----------------------------------------------------------------- deep nesting
@pytest.mark.parametrize("file_name", ["project.json", "storyboard.json"])
@pytest.mark.parametrize("command", ["validate", "generate-images"])
async def test_json_nested_100000_deep_is_a_clear_project_error(
    tmp_path: Path, file_name: str, command: str
) -> None:
    root = init_project("Deep", tmp_path)
    target = root / file_name
    text = target.read_text(encoding="utf-8").rstrip().rstrip("}")
    target.write_text(text + ', "x_deep": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    args = ["--mock"] if command == "generate-images" else []
    result = await run_storycore(command, "--project", str(root), *args, limit_s=60)
    assert result.rc == 3, result.output
    _one_paragraph_error(result, file_name, "deep")
    result.assert_bounded(seconds=60)


async def test_nesting_the_encoder_cannot_write_back_is_refused_before_rendering(
    tmp_path: Path,
) -> None:
    """980 levels load with the standard library, but cannot be saved from the engine's deeper
    stack: the run used to render everything, then fail its save. Now: refused at once, with
    the JSON path, before anything renders."""
    root = init_project("Deep", tmp_path)
    target = root / "project.json"
    text = target.read_text(encoding="utf-8").rstrip().rstrip("}")
    target.write_text(text + ', "x_deep": ' + '{"a": ' * 980 + "1" + "}" * 980 + "}\n")
    result = await run_storycore("generate-images", "--project", str(root), "--mock")
    assert result.rc == 3, result.output
    line = _one_paragraph_error(result, "project.json", "x_deep.a.a")
    assert "200 levels" in line
    assert not (root / "assets" / "images" / "generated").exists()
    result.assert_bounded(seconds=60)


# ----------------------------------------------------------------- lone surrogates
async def test_a_lone_surrogate_in_project_json_does_not_make_it_unsaveable(
    tmp_path: Path,
) -> None:
    root = init_project("Odd", tmp_path)

    def plant(data: dict[str, Any]) -> None:
        data["x_note"] = "keep\ud800me"
        data["coherence_anchors"]["palette_id"] = "PALETTE\udfff"
        data["characters"] = {"hero\udbff": {"name": "lone \udc00 low"}}

    _edit(root / "project.json", plant)  # json.dumps writes the \ud800 escapes
    _edit(root / "storyboard.json", lambda b: b["shots"][0].update(title="Open\ud800ing"))
    result = await run_storycore("generate-images", "--project", str(root), "--mock")
    assert result.rc == 0, result.output
    result.assert_bounded(seconds=60)
    project = load_project(root)  # the saved file loads, every string the same
    assert project.data["x_note"] == "keep\ud800me"
    assert project.data["coherence_anchors"]["palette_id"] == "PALETTE\udfff"
    assert project.data["characters"] == {"hero\udbff": {"name": "lone \udc00 low"}}
    assert project.storyboard["shots"][0]["title"] == "Open\ud800ing"
    assert len(records(project)) == 3
    assert "\\ud800" in (root / "project.json").read_text(encoding="utf-8")


# ----------------------------------------------------------------- odd manifest values
async def test_odd_values_in_manifest_records_are_tolerated(tmp_path: Path) -> None:
    root = init_project("Records", tmp_path)
    first = await run_storycore("generate-images", "--project", str(root), "--mock")
    assert first.rc == 0, first.output

    def newer_version(data: dict[str, Any]) -> None:
        items = data["asset_manifest"]["generated_images"]
        items[0]["timings"] = {"future_key": 1, "total": "abc", "queued": "0.5"}
        items[0]["x_added_later"] = {"by": "StoryCore 9"}
        items[1]["seed"] = "12"
        items[2]["width"] = None
        items[2]["models"] = "not a list"
        items.append({"shot_id": "shot_01", "note": "a hand-made entry without an id"})

    _edit(root / "project.json", newer_version)
    project = load_project(root)
    by_shot = {r.shot_id: r for r in records(project)}  # the entry without an id passed over
    assert len(records(project)) == 3
    assert by_shot["shot_01"].timings.total is None and by_shot["shot_01"].timings.queued == 0.5
    assert by_shot["shot_02"].seed == 12
    assert by_shot["shot_03"].width == 0 and by_shot["shot_03"].models == []

    for args in (
        ["generate-images", "--mock", "--dry-run"],
        ["validate"],
        ["assets", "list"],
        ["generate-images", "--mock"],
    ):
        result = await run_storycore(*args, "--project", str(root))
        assert result.rc == 0, (args, result.output)
        assert "Traceback" not in result.output and "unexpected" not in result.output
        result.assert_bounded(seconds=60)
    kept = json.loads((root / "project.json").read_text())["asset_manifest"]["generated_images"]
    assert kept[0]["timings"]["future_key"] == 1 and kept[0]["x_added_later"]["by"]


async def test_a_manifest_list_of_the_wrong_kind_is_a_clear_error(tmp_path: Path) -> None:
    root = init_project("Records", tmp_path)
    _edit(root / "project.json", lambda d: d["asset_manifest"].update(generated_images={}))
    result = await run_storycore("generate-images", "--project", str(root), "--mock")
    assert result.rc == 3, result.output
    _one_paragraph_error(result, "project.json", "asset_manifest", "generated_images")
    result.assert_bounded(seconds=60)


# ----------------------------------------------------------------- planted special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
async def test_a_named_pipe_as_project_json_is_refused_not_waited_on(tmp_path: Path) -> None:
    root = init_project("Pipe", tmp_path)
    (root / "project.json").unlink()
    os.mkfifo(root / "project.json")
    result = await run_storycore("validate", "--project", str(root), limit_s=30)
    assert result.rc == 3, result.output
    _one_paragraph_error(result, "project.json", "not a regular file")
    result.assert_bounded(seconds=30)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
async def test_a_link_to_an_endless_device_is_refused(tmp_path: Path) -> None:
    root = init_project("Zero", tmp_path)
    (root / "storyboard.json").unlink()
    (root / "storyboard.json").symlink_to("/dev/zero")
    result = await run_storycore("validate", "--project", str(root), limit_s=30)
    assert result.rc == 3, result.output
    _one_paragraph_error(result, "storyboard.json", "not a regular file")
    result.assert_bounded(seconds=30)


async def test_a_project_json_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    """A received project whose ``project.json`` links to a file of the user's: StoryCore reads
    it, and every save replaces the link with the project's own file (os.replace)."""
    root = init_project("Linked", tmp_path)
    outside = tmp_path / "users-own.json"
    outside.write_bytes((root / "project.json").read_bytes())
    before = outside.read_bytes()
    (root / "project.json").unlink()
    (root / "project.json").symlink_to(outside)
    result = await run_storycore("generate-images", "--project", str(root), "--mock")
    assert result.rc == 0, result.output
    assert outside.read_bytes() == before
    assert not (root / "project.json").is_symlink()
    assert len(records(load_project(root))) == 3


async def test_a_journal_pointing_at_an_endless_file_is_not_read(tmp_path: Path) -> None:
    """The next run adopts ``done`` records from the journal by hashing their image: a planted
    journal naming ``/dev/zero`` (or ``../..``) must not make it hash forever."""
    root = init_project("Journal", tmp_path)
    state = root / ".storycore"
    state.mkdir()

    def planted(n: int, path: str) -> dict[str, Any]:
        record = {
            "asset_id": f"planted_{n}",
            "shot_id": "shot_01",
            "version": 1,
            "render": 9,
            "path": path,
            "sha256": "0" * 64,
            "size": 1,
            "width": 1,
            "height": 1,
            "placeholder": False,
            "created_at": "2024-01-01T00:00:00Z",
        }
        return {"event": "done", "asset_id": record["asset_id"], "path": path, "record": record}

    paths = ["/dev/zero", "../../../../../../../../dev/zero", "assets/images/generated/z"]
    (root / "assets/images/generated").mkdir(parents=True)
    (root / "assets/images/generated/z").symlink_to("/dev/zero")
    lines = [planted(n, path) for n, path in enumerate(paths)]
    (state / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = await run_storycore("generate-images", "--project", str(root), "--mock", limit_s=45)
    assert result.rc == 0, result.output
    result.assert_bounded(seconds=45)
    assert not any(r.asset_id.startswith("planted") for r in records(load_project(root)))
