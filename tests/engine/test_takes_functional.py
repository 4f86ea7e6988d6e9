"""Takes and profiles end to end, against the emulator: what each take renders with (seed, take
and profile in the record, the sidecar and the PNG provenance), what a rerun renders (only the
missing takes), which take the board shows, the draft/final profiles, promote (``--approved``),
``--rejected`` and ``--new-takes``, and ``kill -9`` in the middle of a run of takes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, PanelPlanned, RenderRequest
from storycore.errors import ConfigError, ProjectError
from storycore.manifest import AssetRecord, records
from storycore.panels import take_seed
from storycore.project import load_project
from storycore.review._render_details import read_png_texts
from tests.engine.conftest import (
    Recorder,
    done_count,
    fast_settings,
    make_project,
    render_then_kill,
    run_cli,
)


def _records(root: Path, shot_id: str) -> list[AssetRecord]:
    """The shot's records by render number: runs in order, but the takes of one run land (and
    take their render numbers) in any order."""
    mine = [r for r in records(load_project(root)) if r.shot_id == shot_id]
    return sorted(mine, key=lambda r: r.render)


def _by_take(found: list[AssetRecord]) -> list[AssetRecord]:
    return sorted(found, key=lambda r: (r.take, r.render))


def _active(root: Path, shot_id: str) -> str:
    return str(
        json.loads((root / "project.json").read_text())["shots_index"][shot_id]["active_asset"]
    )


def _edit_record(root: Path, asset_id: str, **values: Any) -> None:
    path = root / "project.json"
    data = json.loads(path.read_text())
    for item in data["asset_manifest"]["generated_images"]:
        if item["asset_id"] == asset_id:
            item.update(values)
    path.write_text(json.dumps(data, indent=2))


def _pick(root: Path, shot_id: str, asset_id: str) -> None:
    path = root / "project.json"
    data = json.loads(path.read_text())
    data["shots_index"][shot_id]["active_asset"] = asset_id
    path.write_text(json.dumps(data, indent=2))


async def _render(root: Path, url: str, **request: Any) -> Any:
    settings = request.pop("settings", None) or fast_settings()
    events = Recorder()
    summary = await ImageEngine(settings, on_event=events).render(
        RenderRequest(root, backends=(url,), **request)
    )
    return summary, events


async def test_takes_have_their_own_seeds_and_a_rerun_renders_only_the_missing_ones(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 2)
    async with Emulator() as emu:
        summary, _ = await _render(root, emu.url, takes=3)
        assert summary.counts["rendered"] == 6, summary.to_dict()
        assert [o.shot_id for o in summary.outcomes] == [
            "shot_01",
            "shot_01#2",
            "shot_01#3",
            "shot_02",
            "shot_02#2",
            "shot_02#3",
        ]
        takes = _by_take(_records(root, "shot_01"))
        assert [r.take for r in takes] == [1, 2, 3]
        base = takes[0].seed
        assert base is not None
        assert [r.seed for r in takes] == [base, take_seed(base, 2), take_seed(base, 3)]
        assert len({r.workflow_sha256 for r in takes}) == 3  # each take its own cache key
        # The first take is what the board shows; the others wait in the strip.
        assert _active(root, "shot_01") == takes[0].asset_id
        # take and profile travel in the sidecar and in the image's own provenance
        sidecar = json.loads((root / takes[1].sidecar_path).read_text())
        assert sidecar["take"] == 2 and sidecar["seed"] == take_seed(base, 2)
        provenance = json.loads(read_png_texts(root / takes[1].path)["storycore"])
        assert provenance["take"] == 2 and provenance["seed"] == take_seed(base, 2)
        assert provenance["profile"] is None

        again, _ = await _render(root, emu.url, takes=3)
        assert again.counts["skipped"] == 6 and again.counts["rendered"] == 0
        more, _ = await _render(root, emu.url, takes=4)
        assert more.counts["rendered"] == 2 and more.counts["skipped"] == 6
        assert [r.take for r in _by_take(_records(root, "shot_01"))] == [1, 2, 3, 4]
        executed = emu.executed_prompt_ids
        assert len(executed) == len(set(executed)) == 8


async def test_a_picked_take_stays_active_through_reruns_and_new_takes(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    async with Emulator() as emu:
        await _render(root, emu.url, takes=2)
        second = _by_take(_records(root, "shot_01"))[1]
        _pick(root, "shot_01", second.asset_id)
        await _render(root, emu.url, takes=3)
        assert _active(root, "shot_01") == second.asset_id  # take 3 did not steal it
        summary, _ = await _render(root, emu.url, new_takes=2)
        assert [o.shot_id for o in summary.outcomes] == ["shot_01#4", "shot_01#5"]
        assert [r.take for r in _by_take(_records(root, "shot_01"))] == [1, 2, 3, 4, 5]
        assert _active(root, "shot_01") == second.asset_id


async def test_a_changed_prompt_makes_the_lowest_new_take_active(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    async with Emulator() as emu:
        await _render(root, emu.url, takes=2)
        board = json.loads((root / "storyboard.json").read_text())
        board["shots"][0]["prompt_modules"]["subject"] = "a red lighthouse"
        (root / "storyboard.json").write_text(json.dumps(board))
        summary, _ = await _render(root, emu.url, takes=2)
        assert summary.counts["rendered"] == 2
        new = _by_take(_records(root, "shot_01")[2:])
        assert [r.take for r in new] == [1, 2]
        assert _active(root, "shot_01") == new[0].asset_id
        # back to the old prompt: its takes were rendered before and are shown again, not
        # rendered a second time
        board["shots"][0]["prompt_modules"]["subject"] = "panel number 1, a lighthouse"
        (root / "storyboard.json").write_text(json.dumps(board))
        back, _ = await _render(root, emu.url, takes=2)
        assert back.counts["skipped"] == 2 and back.counts["rendered"] == 0
        assert _active(root, "shot_01") == _by_take(_records(root, "shot_01")[:2])[0].asset_id


async def test_draft_profile_wins_over_the_shot_and_final_promotes_the_approved_take(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 2)
    board = json.loads((root / "storyboard.json").read_text())
    board["shots"][0]["prompt_modules"]["technical"]["steps"] = 30  # the shot's own value
    (root / "storyboard.json").write_text(json.dumps(board))
    async with Emulator() as emu:
        plan = Recorder()
        await ImageEngine(fast_settings(), on_event=plan).render(
            RenderRequest(root, profile="draft", takes=2, dry_run=True)
        )
        planned = {p.shot_id: p for p in plan.of(PanelPlanned)}
        assert planned["shot_01"].steps == 8  # the profile's, not the shot's 30
        assert max(planned["shot_01"].width, planned["shot_01"].height) == 512
        assert set(planned) == {"shot_01", "shot_01#2", "shot_02", "shot_02#2"}

        await _render(root, emu.url, profile="draft", takes=2)
        drafts = _by_take(_records(root, "shot_01"))
        assert [(r.take, r.profile) for r in drafts] == [(1, "draft"), (2, "draft")]
        # a plain render is another cache key: rendered, not taken from the drafts
        plain, _ = await _render(root, emu.url, shots=("shot_01",))
        assert plain.counts["rendered"] == 1
        again, _ = await _render(root, emu.url, profile="draft", takes=2)
        assert again.counts["skipped"] == 4

        _edit_record(root, drafts[1].asset_id, approved=True)
        promoted, _ = await _render(root, emu.url, profile="final", approved=True)
        assert [(o.shot_id, o.status) for o in promoted.outcomes] == [
            ("shot_01#2", "rendered"),
            ("shot_02", "skipped"),
        ]
        assert promoted.outcomes[1].reason == "no approved take to render again"
        final = _records(root, "shot_01")[-1]
        assert (final.take, final.profile, final.seed) == (2, "final", drafts[1].seed)
        assert _active(root, "shot_01") == final.asset_id
        provenance = json.loads(read_png_texts(root / final.path)["storycore"])
        assert provenance["profile"] == "final" and provenance["take"] == 2


async def test_promote_with_nothing_approved_and_an_unknown_profile_are_refused(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 1)
    with pytest.raises(ProjectError, match="no shot has an approved take"):
        await ImageEngine(fast_settings()).render(
            RenderRequest(root, profile="final", approved=True, mock=True)
        )
    with pytest.raises(ConfigError, match="the profiles are draft, final"):
        await ImageEngine(fast_settings()).render(RenderRequest(root, profile="drft", mock=True))
    code, _, err = await run_cli("generate-images", "--project", str(root), "--profile", "drft")
    assert code == 2 and "no render profile 'drft'" in err and "Traceback" not in err
    code, _, err = await run_cli(
        "generate-images", "--project", str(root), "--approved", "--takes", "2", "--mock"
    )
    assert code == 2 and "does not go with" in err


async def test_rejected_renders_a_new_take_of_only_the_rejected_shots(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with Emulator() as emu:
        await _render(root, emu.url, takes=2)
        first = _by_take(_records(root, "shot_02"))[0]
        _edit_record(root, first.asset_id, rejected=True)
        summary, _ = await _render(root, emu.url, rejected=True)
        assert [(o.shot_id, o.status) for o in summary.outcomes] == [
            ("shot_01", "skipped"),
            ("shot_02#3", "rendered"),
            ("shot_03", "skipped"),
        ]
        newest = _records(root, "shot_02")[-1]
        assert newest.take == 3
        assert _active(root, "shot_02") == newest.asset_id  # the rejected take gave way
        nothing, _ = await _render(root, emu.url, rejected=True)
        assert nothing.counts["rendered"] == 0 and nothing.exit_code == 0


async def test_a_profile_of_the_project_sets_steps_and_takes(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    (root / "storycore.toml").write_text(
        "[profiles.quick]\nsteps = 2\ntakes = 3\nrender_long_side = 64\n"
    )
    async with Emulator() as emu:
        code, out, err = await run_cli(
            "generate-images",
            "--project",
            str(root),
            "--backend",
            emu.url,
            "--profile",
            "quick",
            "--json",
            env={"STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2"},
        )
        assert code == 0, err
        done = [json.loads(line) for line in out.splitlines() if '"panel_done"' in line]
        assert sorted(d["shot_id"] for d in done) == ["shot_01", "shot_01#2", "shot_01#3"]
        takes = _records(root, "shot_01")
        assert sorted((r.take, r.profile, max(r.width, r.height)) for r in takes) == [
            (1, "quick", 64),
            (2, "quick", 64),
            (3, "quick", 64),
        ]
        sampler = [
            node["inputs"]
            for node in json.loads(read_png_texts(root / takes[0].path)["prompt"]).values()
            if node["class_type"] == "KSampler"
        ]
        assert sampler and sampler[0]["steps"] == 2


@pytest.mark.slow
async def test_kill_9_during_a_run_of_takes_renders_each_take_once(tmp_path: Path) -> None:
    root = make_project(tmp_path, 4)
    async with Emulator(EmulatorOptions(step_seconds=0.05)) as emu:
        env = dict(os.environ)
        env.update(
            {
                "STORYCORE_RENDER__STEPS": "3",
                "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
                "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
            }
        )
        await render_then_kill(root, emu.url, env, after=3, args=("--takes", "3"))
        assert done_count(root) < 12
        summary, _ = await _render(root, emu.url, takes=3)
        assert summary.counts["rendered"] + summary.counts["skipped"] == 12, summary.to_dict()
        executed = emu.executed_prompt_ids
        assert len(executed) == len(set(executed)) == 12, executed
    every = records(load_project(root))
    assert sorted((r.shot_id, r.take) for r in every) == sorted(
        (f"shot_{n:02d}", k) for n in range(1, 5) for k in (1, 2, 3)
    )
