"""``storycore takes``: the real CLI, as a child process, on a project with real mock takes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import make_project, run_cli


def _cli(*args: str) -> tuple[int, str, str]:
    return asyncio.run(run_cli(*args))


@pytest.fixture
def takes_project(tmp_path: Path) -> Path:
    root = make_project(tmp_path, 2)
    code, _out, err = _cli("generate-images", "--mock", "--takes", "2", "--project", str(root))
    assert code == 0, err
    return root


def _data(root: Path) -> dict[str, Any]:
    return json.loads((root / "project.json").read_text())  # type: ignore[no-any-return]


def test_list_shows_both_takes_with_seed(takes_project: Path) -> None:
    code, out, err = _cli("takes", "shot_01", "--project", str(takes_project), "--json")
    assert code == 0, err
    takes = json.loads(out)["takes"]
    assert [t["render"] for t in takes] == [1, 2]
    assert all(isinstance(t["seed"], int) for t in takes)
    assert "profile" in takes[0]
    code, out, _ = _cli("takes", "shot_01", "--project", str(takes_project))
    assert code == 0 and "shot_01_v1_r002" in out.replace("\n", "")


def test_pick_changes_active_asset_and_journals(takes_project: Path) -> None:
    code, _out, err = _cli("takes", "pick", "shot_01", "2", "--project", str(takes_project))
    assert code == 0, err
    assert _data(takes_project)["shots_index"]["shot_01"]["active_asset"] == "shot_01_v1_r002"
    journal = "".join(p.read_text() for p in takes_project.rglob("*journal*") if p.is_file())
    assert '"review"' in journal and "shot_01_v1_r002" in journal


def test_approve_then_reject_are_exclusive(takes_project: Path) -> None:
    p = str(takes_project)
    assert _cli("takes", "approve", "shot_01", "1", "-p", p)[0] == 0
    assert _cli("takes", "reject", "shot_01", "1", "-p", p)[0] == 0
    _code, out, _ = _cli("takes", "shot_01", "-p", p, "--json")
    first = json.loads(out)["takes"][0]
    assert first["rejected"] and not first["approved"]
    assert _cli("takes", "approve", "shot_01", "1", "-p", p)[0] == 0
    first = json.loads(_cli("takes", "shot_01", "-p", p, "--json")[1])["takes"][0]
    assert first["approved"] and not first["rejected"]


@pytest.mark.parametrize("args", [("pick", "shot_01", "9"), ("approve", "shot_09")])
def test_unknown_shot_or_take_exits_3(takes_project: Path, args: tuple[str, ...]) -> None:
    before = (takes_project / "project.json").read_bytes()
    code, _out, err = _cli("takes", *args, "-p", str(takes_project))
    assert code == 3
    assert "Traceback" not in err
    assert "shot_01" in err
    assert (takes_project / "project.json").read_bytes() == before


def test_comment_saved_under_x_review(takes_project: Path) -> None:
    code, _out, err = _cli(
        "takes", "comment", "shot_02", "  too dark\r\n", "-p", str(takes_project)
    )
    assert code == 0, err
    review = _data(takes_project)["shots_index"]["shot_02"]["x_review"]
    assert review["comment"] == "too dark"
