"""The three-way merge of a person's edit with StoryCore's changes (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from storycore._project_merge import merge_edit


def _record(asset_id: str, **extra: Any) -> dict[str, Any]:
    return {"asset_id": asset_id, "shot_id": asset_id[:7], "approved": False, **extra}


def test_each_side_keeps_its_own_changes() -> None:
    base = {"notes": "a", "shots_index": {"shot_01": {"status": "pending"}}, "config": {"s": 1}}
    ours = {"notes": "a", "shots_index": {"shot_01": {"status": "rendered"}}, "config": {"s": 1}}
    theirs = {"notes": "b", "shots_index": {"shot_01": {"status": "pending", "x": 1}}}
    result = merge_edit(base, ours, theirs)
    assert result.data == {"notes": "b", "shots_index": {"shot_01": {"status": "rendered", "x": 1}}}
    assert result.conflicts == []  # "config" removed by the person stays removed


def test_records_merge_by_id_and_a_conflict_keeps_the_persons_value() -> None:
    one, two = _record("shot_01_v1_r001"), _record("shot_02_v1_r001")
    base = {"images": [one]}
    ours = {"images": [{**one, "approved": True}, two]}  # approved here, a new render added
    theirs = {"images": [{**one, "approved": "by hand"}, _record("shot_03_v1_r001")]}
    result = merge_edit(base, ours, theirs)
    ids = [item["asset_id"] for item in result.data["images"]]
    assert ids == ["shot_01_v1_r001", "shot_03_v1_r001", "shot_02_v1_r001"]
    assert result.data["images"][0]["approved"] == "by hand"
    assert [(c.path, c.kept, c.dropped) for c in result.conflicts] == [
        ("images[0].approved", "by hand", True)
    ]


def test_a_record_the_person_deleted_stays_deleted() -> None:
    one, two = _record("shot_01_v1_r001"), _record("shot_02_v1_r001")
    result = merge_edit({"images": [one, two]}, {"images": [one, two]}, {"images": [two]})
    assert result.data == {"images": [two]} and result.conflicts == []
