"""``edit_shot`` on a real project's storyboard.json: changes, stale tokens, bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storycore.errors import EditConflict, ProjectError
from storycore.review._edit import edit_shot, storyboard_token
from tests.engine.conftest import make_project


def _shot(root: Path, shot_id: str = "shot_01") -> dict[str, object]:
    board = json.loads((root / "storyboard.json").read_text())
    return next(s for s in board["shots"] if s["shot_id"] == shot_id)  # type: ignore[no-any-return]


def test_edit_changes_module_and_technical_value(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    token = storyboard_token(root)
    changes = {"prompt_modules": {"subject": "a red kite", "technical": {"steps": "12"}}}
    new = edit_shot(root, "shot_01", changes, token)
    assert new != token and new == storyboard_token(root)
    shot = _shot(root)
    modules = shot["prompt_modules"]
    assert isinstance(modules, dict)
    assert modules["subject"] == "a red kite"
    assert modules["technical"]["steps"] == 12
    assert _shot(root, "shot_02")["title"] == "Panel 2"


def test_stale_token_is_a_conflict_and_file_untouched(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    token = storyboard_token(root)
    edit_shot(root, "shot_01", {"title": "first"}, token)
    before = (root / "storyboard.json").read_bytes()
    with pytest.raises(EditConflict):
        edit_shot(root, "shot_01", {"title": "second"}, token)
    assert (root / "storyboard.json").read_bytes() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt_modules": {"technical": {"steps": "lots"}}}, "steps"),
        ({"prompt_modules": {"technical": {"cfg_scale": 1000}}}, "cfg_scale"),
        ({"shot_number": 7}, "shot_number"),
    ],
)
def test_bad_value_names_field_and_writes_nothing(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    root = make_project(tmp_path, 1)
    before = (root / "storyboard.json").read_bytes()
    with pytest.raises(ProjectError) as caught:
        edit_shot(root, "shot_01", changes, storyboard_token(root))
    assert field in str(caught.value.paragraph())
    assert (root / "storyboard.json").read_bytes() == before
