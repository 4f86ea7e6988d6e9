"""Project folders: load, validate, init, atomic save; unknown fields kept; no write on error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storycore.errors import ProjectError
from storycore.project import (
    init_project,
    load_project,
    name_seed,
    save_project,
    storyboard_warnings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    dest = tmp_path / "lighthouse"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_example_project_loads(example: Path) -> None:
    project = load_project(example)
    assert project.project_id == "storycore_lighthouse_keeper"
    assert len(project.shots) >= 6
    assert project.global_seed == name_seed("The Lighthouse Keeper")


def test_name_seed_matches_the_historic_formula() -> None:
    # md5("demo") = fe01ce2a7fbac8fafaed7c982a04e229 -> 0xfe01ce2a % 2**31
    assert name_seed("demo") == 0xFE01CE2A % 2**31


def test_init_then_validate(tmp_path: Path) -> None:
    root = init_project("My Film", tmp_path)
    project = load_project(root)
    assert [s.shot_id for s in project.shots] == ["shot_01", "shot_02", "shot_03"]
    assert (root / "assets" / "images").is_dir() and (root / "assets" / "audio").is_dir()
    assert project.global_seed == name_seed("My Film")
    with pytest.raises(ProjectError, match="already holds a project"):
        init_project("My Film", tmp_path)


@pytest.mark.parametrize("present", [["storyboard.json"], ["project.json"], ["both"]])
def test_init_never_overwrites_a_project_file(tmp_path: Path, present: list[str]) -> None:
    root = tmp_path / "Film"
    root.mkdir()
    names = ["project.json", "storyboard.json"] if present == ["both"] else present
    for name in names:
        (root / name).write_text('{"mine": true}')
    before = _snapshot(root)
    with pytest.raises(ProjectError) as info:
        init_project("Film", tmp_path)
    assert all(name in str(info.value) for name in names)
    assert "nothing was written" in str(info.value)
    assert _snapshot(root) == before
    assert sorted(p.name for p in root.iterdir()) == sorted(names)


def test_init_leaves_other_files_in_the_folder_alone(tmp_path: Path) -> None:
    root = tmp_path / "Film"
    (root / "assets" / "images").mkdir(parents=True)
    (root / "assets" / "images" / "sketch.png").write_bytes(b"mine")
    (root / "README.txt").write_text("my notes")
    init_project("Film", tmp_path)
    assert (root / "assets" / "images" / "sketch.png").read_bytes() == b"mine"
    assert (root / "README.txt").read_text() == "my notes"
    assert load_project(root).project_id == "storycore_Film"


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "end."])
def test_init_refuses_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProjectError):
        init_project(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_keeps_unknown_fields_and_bumps_updated_at(example: Path) -> None:
    project = load_project(example)
    before = json.loads((example / "project.json").read_text())
    project.data["asset_manifest"]["x"] = {"path": "a.png"}
    save_project(project)
    after = json.loads((example / "project.json").read_text())
    assert after["characters"] == before["characters"]
    assert after["capabilities"] == before["capabilities"]
    assert after["updated_at"] != before["updated_at"]
    assert after["asset_manifest"]["x"] == {"path": "a.png"}
    assert list(after) == list(before)  # key order kept
    assert not [p for p in example.iterdir() if p.name.endswith(".tmp")]


def test_unknown_keys_are_warned_about_and_still_written_back(example: Path) -> None:
    _mutate(
        example,
        "storyboard.json",
        lambda d: d["shots"][2]["prompt_modules"]["technical"].update(stpes=30),
    )
    _mutate(example, "project.json", lambda d: d["config"].update(globl_seed=1))
    project = load_project(example)
    warnings = storyboard_warnings(project)
    assert [(w.file, w.path, w.suggestion, w.shot_id) for w in warnings] == [
        (str(example / "project.json"), "config.globl_seed", "global_seed", None),
        (
            str(example / "storyboard.json"),
            "shots[2].prompt_modules.technical.stpes",
            "steps",
            "shot_03",
        ),
    ]
    save_project(project, storyboard=True)
    board = json.loads((example / "storyboard.json").read_text())
    data = json.loads((example / "project.json").read_text())
    assert board["shots"][2]["prompt_modules"]["technical"]["stpes"] == 30
    assert data["config"]["globl_seed"] == 1


def test_the_example_project_has_no_warnings(example: Path) -> None:
    assert storyboard_warnings(load_project(example)) == []


def _mutate(root: Path, name: str, fn: Any) -> None:
    path = root / name
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


CASES = [
    (
        "storyboard.json",
        lambda d: d["shots"][2]["prompt_modules"]["technical"].update(steps=0),
        "shots[2].prompt_modules.technical.steps (shot 'shot_03'): should be a whole number "
        "from 1 to 1000, got 0",
        "shot_03",
    ),
    (
        "storyboard.json",
        lambda d: d["shots"][0].update(shot_id="../evil"),
        "shots[0].shot_id: should be letters, digits, `_ . -`, at most 128 characters",
        "",
    ),
    ("storyboard.json", lambda d: d["shots"][1].update(shot_id="shot_01"), "used twice", ""),
    ("storyboard.json", lambda d: d.pop("shots"), "shots", ""),
    (
        "storyboard.json",
        lambda d: d["shots"][0]["prompt_modules"]["technical"].update(resolution="big"),
        "technical.resolution (shot 'shot_01'): should be a size WIDTHxHEIGHT",
        "shot_01",
    ),
    (
        "project.json",
        lambda d: d["config"].pop("global_seed"),
        "config.global_seed: is required",
        "",
    ),
    (
        "project.json",
        lambda d: d["coherence_anchors"].update(lighting_direction=3),
        "coherence_anchors.lighting_direction: should be text (or null), got 3",
        "",
    ),
    ("project.json", lambda d: d.update(project_id=""), "project_id", ""),
    ("project.json", lambda d: d.update(project_id="other"), "does not match", ""),
]


@pytest.mark.parametrize(("name", "fn", "expect", "shot"), CASES)
def test_invalid_fields_are_named_and_nothing_is_written(
    example: Path, name: str, fn: Any, expect: str, shot: str
) -> None:
    _mutate(example, name, fn)
    before = _snapshot(example)
    with pytest.raises(ProjectError) as info:
        load_project(example)
    text = str(info.value)
    assert expect in text
    assert "should match pattern" not in text
    assert shot in text
    assert "storyboard.json" in text or "project.json" in text
    assert _snapshot(example) == before


def test_json_syntax_error_gives_line_and_column(example: Path) -> None:
    (example / "storyboard.json").write_text('{\n  "shots": [,]\n}\n')
    with pytest.raises(ProjectError, match=r"line 2, column 13"):
        load_project(example)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="is not a folder"):
        load_project(tmp_path / "nope")
    with pytest.raises(ProjectError, match="does not exist"):
        load_project(tmp_path)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
extra_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).map(
    lambda s: "x_" + s
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extras=st.dictionaries(extra_keys, json_values, max_size=4),
    shot_extras=st.dictionaries(extra_keys, json_values, max_size=3),
)
def test_round_trip_keeps_every_unknown_field(
    tmp_path_factory: pytest.TempPathFactory, extras: dict[str, Any], shot_extras: dict[str, Any]
) -> None:
    root = init_project("Round Trip", tmp_path_factory.mktemp("rt"))
    _mutate(root, "project.json", lambda d: d.update(extras))
    _mutate(root, "storyboard.json", lambda d: d["shots"][0].update(shot_extras))
    project = load_project(root)
    save_project(project, storyboard=True)
    data = json.loads((root / "project.json").read_text())
    board = json.loads((root / "storyboard.json").read_text())
    for key, value in extras.items():
        assert data[key] == value
    for key, value in shot_extras.items():
        assert board["shots"][0][key] == value


def test_init_where_nothing_can_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ProjectError, match="cannot create the project"):
        init_project("Film", blocker)


def test_dropped_shot_models_come_back_the_same(example: Path) -> None:
    project = load_project(example)
    before = [shot.model_dump() for shot in project.shots]
    project.drop_shots()
    assert project._shots is None
    assert [shot.model_dump() for shot in project.shots] == before
