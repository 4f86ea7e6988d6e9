"""Any sequence of review actions (pick, approve, unapprove, reject, comment, edit, valid or not)
mixed with new renders keeps ``project.json`` and ``storyboard.json`` valid and loses no render
record; and a pick made while a render holds unsaved records survives the render's save."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storycore.engine._persist import ProjectWriter
from storycore.errors import ProjectError
from storycore.journal import Journal
from storycore.manifest import AssetRecord, add_record, asset_relpath, records
from storycore.project import load_project, now_iso, project_schema, save_project
from storycore.review import (
    edit_shot,
    pick_take,
    reject_take,
    set_approval,
    set_comment,
    storyboard_token,
)
from tests.board._project import copy_example, png_bytes

SHOTS = ("shot_01", "shot_02", "shot_03")


def _made(root: Path, shot_id: str, take: int, render: int) -> AssetRecord:
    """A render's file, written as the engine lands one, and its record (not yet recorded)."""
    rel = asset_relpath(shot_id, 1, render)
    data = png_bytes((render * 40 % 255, 90, 160))
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return AssetRecord(
        asset_id=f"{shot_id}_v1_r{render:03d}",
        shot_id=shot_id,
        version=1,
        render=render,
        path=str(rel),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=64,
        height=36,
        placeholder=False,
        created_at=now_iso(),
        take=take,
        seed=100 + take,
    )


def _land(root: Path, shot_id: str, take: int) -> str:
    """A new render of ``shot_id`` recorded and made active, saved."""
    project = load_project(root)
    render = 1 + max((r.render for r in records(project) if r.shot_id == shot_id), default=0)
    record = _made(root, shot_id, take, render)
    add_record(project, record)
    save_project(project)
    return record.asset_id


ACTIONS = st.one_of(
    st.tuples(st.just("render"), st.sampled_from(SHOTS), st.integers(1, 4)),
    st.tuples(st.just("pick"), st.sampled_from(SHOTS), st.integers(1, 6)),
    st.tuples(st.just("approve"), st.sampled_from(SHOTS), st.booleans()),
    st.tuples(st.just("reject"), st.sampled_from(SHOTS), st.booleans()),
    st.tuples(st.just("comment"), st.sampled_from(SHOTS), st.text(max_size=40)),
    st.tuples(
        st.just("edit"),
        st.sampled_from((*SHOTS, "no_such_shot")),
        st.one_of(
            st.fixed_dictionaries(
                {"prompt_modules": st.fixed_dictionaries({"subject": st.text(max_size=30)})}
            ),
            st.fixed_dictionaries(
                {
                    "prompt_modules": st.fixed_dictionaries(
                        {
                            "technical": st.fixed_dictionaries(
                                {
                                    "steps": st.one_of(
                                        st.integers(-5, 2000), st.just("lots"), st.none()
                                    )
                                }
                            )
                        }
                    )
                }
            ),
            st.fixed_dictionaries({"title": st.one_of(st.text(max_size=20), st.integers())}),
            st.fixed_dictionaries({"shot_id": st.just("renamed")}),
        ),
        st.booleans(),  # a stale token
    ),
)


def _apply(root: Path, action: tuple[Any, ...], landed: set[str]) -> None:
    kind, shot = action[0], action[1]
    if kind == "render":
        landed.add(_land(root, shot, action[2]))
    elif kind == "pick":
        pick_take(root, shot, action[2])
    elif kind == "approve":
        set_approval(root, shot, None, action[2])
    elif kind == "reject":
        reject_take(root, shot, None, undo=action[2])
    elif kind == "comment":
        set_comment(root, shot, action[2])
    else:
        token = "0" * 64 if action[3] else storyboard_token(root)
        edit_shot(root, shot, action[2], token)


def _check(root: Path, landed: set[str]) -> None:
    import jsonschema

    project = load_project(root)  # both files still load and validate
    jsonschema.validate(json.loads((root / "project.json").read_text()), project_schema())
    ids = {r.asset_id for r in records(project)}
    assert landed <= ids, landed - ids  # no record lost
    for shot_id, entry in project.data.get("shots_index", {}).items():
        active = entry.get("active_asset")
        assert active is None or active in ids, (shot_id, active)
    assert [s.shot_id for s in project.shots][:3] == list(SHOTS)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(ACTIONS, min_size=1, max_size=12))
def test_any_sequence_of_actions_keeps_the_project_valid(
    tmp_path_factory: Any, actions: list[tuple[Any, ...]]
) -> None:
    root = copy_example(tmp_path_factory.mktemp("board"))
    landed: set[str] = set()
    for action in actions:
        with contextlib.suppress(ProjectError):  # refused with a paragraph; nothing else
            _apply(root, action, landed)
        _check(root, landed)
    events = [e for e in Journal(root).events() if e["event"] == "review"]
    assert all(isinstance(e.get("action"), str) for e in events)


async def test_a_pick_during_a_render_survives_the_renders_save(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    first = _land(root, "shot_01", 1)
    second = _land(root, "shot_01", 2)
    journal = Journal(root)
    writer = ProjectWriter(load_project(root), journal)
    try:
        async with writer:
            landed = _made(root, "shot_02", 1, 1)
            await writer.add(landed)  # the render holds it in memory, not saved yet
            pick_take(root, "shot_01", first)  # meanwhile the person picks, on disk
            await writer.flush(final=True)
    finally:
        journal.close()
    final = load_project(root)
    assert {first, second, landed.asset_id} <= {r.asset_id for r in records(final)}
    assert final.data["shots_index"]["shot_01"]["active_asset"] == first  # the pick kept
    assert final.data["shots_index"]["shot_02"]["active_asset"] == landed.asset_id
