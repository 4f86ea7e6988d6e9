"""Unknown keys in storyboard.json / project.json (pure), the JSON Schemas, and validation
messages that speak to people."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from storycore._project_models import (
    CoherenceAnchors,
    ControlRef,
    LoraRef,
    ProjectConfig,
    ProjectFileModel,
    PromptModules,
    References,
    Shot,
    Storyboard,
    Technical,
)
from storycore._storyboard_check import (
    StoryboardWarning,
    check_documents,
    json_path,
    known_keys,
    unknown_keys,
)
from storycore._validation_text import PATTERN_TEXT, describe_errors
from storycore.project import project_schema, storyboard_schema

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"

# Every key StoryCore knows, at every level, with a valid value.
FULL_SHOT: dict[str, Any] = {
    "shot_id": "s1",
    "scene_id": "scene_01",
    "shot_number": 1,
    "version": "v2",
    "title": "Title",
    "description": "What happens",
    "duration_seconds": 4.5,
    "template": "sdxl",
    "notes": {"sound": "surf", "anything": [1, 2]},
    "prompt_modules": {
        "subject": "a lighthouse",
        "camera": "wide",
        "lighting": "dusk",
        "color": "teal",
        "style": "film",
        "technical": {
            "seed": 7,
            "aspect_ratio": "16:9",
            "resolution": "1920x1080",
            "cfg_scale": 6.5,
            "steps": 30,
            "negative_prompt": "blurry",
            "sampler": "euler",
            "scheduler": "karras",
            "checkpoint": "sd.safetensors",
            "denoise": 0.7,
        },
    },
    "references": {
        "characters": ["refs/mara.png"],
        "init_image": "refs/rough.png",
        "controls": [
            {
                "kind": "pose",
                "path": "refs/pose.png",
                "strength": 0.8,
                "start_percent": 0.0,
                "end_percent": 0.9,
                "preprocess": True,
            }
        ],
        "loras": [{"name": "film.safetensors", "strength_model": 0.7, "strength_clip": 0.6}],
    },
}
FULL_BOARD: dict[str, Any] = {
    "$schema": "./storyboard.schema.json",
    "storyboard_id": "sb",
    "project_id": "p",
    "shots": [FULL_SHOT, {**copy.deepcopy(FULL_SHOT), "shot_id": "s2"}],
}
FULL_PROJECT: dict[str, Any] = {
    "$schema": "./project.schema.json",
    "schema_version": "1.0",
    "project_id": "p",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
    "config": {
        "global_seed": 5,
        "target_aspect_ratio": "16:9",
        "target_resolution": "1920x1080",
        "target_duration_seconds": 30,
        "hackathon_mode": False,
    },
    "coherence_anchors": {
        "style_anchor_id": "S",
        "palette_id": "P",
        "character_sheet_ids": ["C"],
        "lighting_direction": "left",
        "lighting_temperature": "cool",
        "perspective_type": "2-point",
        "horizon_line": "low",
        "style_prompt": "painterly",
        "palette_prompt": "teal and amber",
    },
    "characters": {"C": {"name": "Mara"}},
    "shots_index": {"s1": {"active_version": "v1", "anything": 1}},
    "asset_manifest": {"generated_images": []},
    "status": {"current_phase": "initialized"},
    "capabilities": {"grid": True},
    "generation_status": {"image_generation": "pending"},
}


def _objects(raw: Any, model: type[BaseModel], path: tuple[str | int, ...] = ()) -> list[Any]:
    """Every object the check walks into: (path, the dict, its model)."""
    found = [(path, raw, model)]
    children = {
        "prompt_modules": PromptModules,
        "technical": Technical,
        "references": References,
        "controls": ControlRef,
        "loras": LoraRef,
        "shots": Shot,
        "config": ProjectConfig,
        "coherence_anchors": CoherenceAnchors,
    }
    for key, value in raw.items():
        child = children.get(key)
        if child is None:
            continue
        if isinstance(value, list):
            for index, item in enumerate(value):
                found += _objects(item, child, (*path, key, index))
        else:
            found += _objects(value, child, (*path, key))
    return found


BOARD_OBJECTS = _objects(FULL_BOARD, Storyboard)
PROJECT_OBJECTS = _objects(FULL_PROJECT, ProjectFileModel)


def test_the_full_documents_are_valid_and_use_every_known_key() -> None:
    Storyboard.model_validate(FULL_BOARD)
    ProjectFileModel.model_validate(FULL_PROJECT)
    used: dict[type[BaseModel], set[str]] = {}
    for _, raw, model in BOARD_OBJECTS + PROJECT_OBJECTS:
        used.setdefault(model, set()).update(raw)
    assert len(used) == 10
    for model, keys in used.items():
        assert keys == known_keys(model) == {f.alias or n for n, f in model.model_fields.items()}


def test_nothing_is_reported_for_known_keys_or_extensions() -> None:
    assert list(unknown_keys(FULL_BOARD, Storyboard)) == []
    assert list(unknown_keys(FULL_PROJECT, ProjectFileModel)) == []
    assert check_documents(FULL_PROJECT, FULL_BOARD, Path("/p")) == []


def test_the_example_project_has_no_unknown_keys() -> None:
    project = json.loads((EXAMPLE / "project.json").read_text())
    board = json.loads((EXAMPLE / "storyboard.json").read_text())
    assert check_documents(project, board, EXAMPLE) == []
    assert any("notes" in shot for shot in board["shots"])  # notes are the user's own


unknown_key = st.text(max_size=12).filter(lambda k: not k.startswith(("x_", "x-")))
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=4,
)


@given(
    which=st.sampled_from(["board", "project"]),
    spot=st.integers(0, 10_000),
    key=unknown_key,
    value=json_value,
    extension=st.text(max_size=6).map(lambda s: "x_" + s),
    extension_spot=st.integers(0, 10_000),
)
def test_any_unknown_key_anywhere_is_reported_at_its_exact_path(
    which: str, spot: int, key: str, value: Any, extension: str, extension_spot: int
) -> None:
    top, model, objects = (
        (FULL_BOARD, Storyboard, BOARD_OBJECTS)
        if which == "board"
        else (FULL_PROJECT, ProjectFileModel, PROJECT_OBJECTS)
    )
    path, _, where_model = objects[spot % len(objects)]
    if key in known_keys(where_model):
        return
    doc = copy.deepcopy(top)

    def at(parts: tuple[str | int, ...]) -> Any:
        node = doc
        for part in parts:
            node = node[part]
        return node

    at(path)[key] = value
    # An extension anywhere (with anything under it) is never reported.
    at(objects[extension_spot % len(objects)][0])[extension] = {"stpes": 1}
    found = list(unknown_keys(doc, model))
    assert [(p, k) for p, k, _ in found] == [((*path, key), key)]


@given(drop=st.lists(st.integers(0, 10_000), max_size=8))
def test_known_keys_are_never_reported_whatever_is_left_out(drop: list[int]) -> None:
    doc = copy.deepcopy(FULL_BOARD)
    objects = _objects(doc, Storyboard)
    for index in drop:
        _, raw, _ = objects[index % len(objects)]
        if raw:
            raw.pop(sorted(raw)[index % len(raw)])
    assert list(unknown_keys(doc, Storyboard)) == []


@pytest.mark.parametrize(
    ("model", "key", "suggestion"),
    [
        (Technical, "stpes", "steps"),
        (Technical, "cfg", "cfg_scale"),
        (Shot, "Title", "title"),
        (Shot, "referenecs", "references"),
        (Shot, "steps", "prompt_modules.technical.steps"),
        (Shot, "init_image", "references.init_image"),
        (Shot, "negative_promt", "prompt_modules.technical.negative_prompt"),
        (ProjectFileModel, "global_seed", "config.global_seed"),
        (ControlRef, "knd", "kind"),
        (Shot, "zzzz", None),
    ],
)
def test_the_closest_key_is_suggested(model: type[BaseModel], key: str, suggestion: str) -> None:
    assert list(unknown_keys({key: 1}, model)) == [((key,), key, suggestion)]


def test_warning_text_names_file_path_shot_and_suggestion() -> None:
    board = copy.deepcopy(FULL_BOARD)
    board["shots"][1]["prompt_modules"]["technical"]["stpes"] = 30
    board["shots"][0]["mood"] = "calm"
    warnings = check_documents(FULL_PROJECT, board, Path("/films/night"))
    assert warnings == [
        StoryboardWarning("/films/night/storyboard.json", "shots[0].mood", "mood", None, "s1"),
        StoryboardWarning(
            "/films/night/storyboard.json",
            "shots[1].prompt_modules.technical.stpes",
            "stpes",
            "steps",
            "s2",
        ),
    ]
    assert warnings[1].text() == (
        "/films/night/storyboard.json: shots[1].prompt_modules.technical.stpes (shot 's2'): "
        "unknown key `stpes`; did you mean `steps`?"
    )
    assert "x_" in warnings[0].text()
    assert warnings[1].to_dict()["message"] == warnings[1].text()


def test_json_path() -> None:
    assert json_path(("shots", 2, "prompt_modules", "technical", "stpes")) == (
        "shots[2].prompt_modules.technical.stpes"
    )
    assert json_path(()) == "(top level)"


def test_the_schemas_are_valid_json_schemas_that_editors_can_use() -> None:
    board_schema = storyboard_schema()
    jsonschema.Draft202012Validator.check_schema(board_schema)
    assert board_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert board_schema["title"] == "StoryCore storyboard.json"
    shot = board_schema["$defs"]["Shot"]
    assert "128 characters" in shot["properties"]["shot_id"]["description"]
    steps = board_schema["$defs"]["Technical"]["properties"]["steps"]
    assert "[render] steps" in steps["description"]
    validator = jsonschema.Draft202012Validator(board_schema)
    assert list(validator.iter_errors(FULL_BOARD)) == []
    assert list(validator.iter_errors(json.loads((EXAMPLE / "storyboard.json").read_text()))) == []
    typo = copy.deepcopy(FULL_BOARD)
    typo["shots"][0]["prompt_modules"]["technical"]["stpes"] = 3
    typo["shots"][0]["x_mine"] = {"anything": 1}
    errors = list(validator.iter_errors(typo))
    assert len(errors) == 1 and "stpes" in errors[0].message
    project = project_schema()
    jsonschema.Draft202012Validator.check_schema(project)
    checker = jsonschema.Draft202012Validator(project)
    assert list(checker.iter_errors(FULL_PROJECT)) == []
    assert list(checker.iter_errors(json.loads((EXAMPLE / "project.json").read_text()))) == []


def _all_models() -> list[type[BaseModel]]:
    return [m for _, _, m in BOARD_OBJECTS + PROJECT_OBJECTS]


def test_every_pattern_in_the_models_has_words_for_people() -> None:
    patterns = {
        getattr(item, "pattern", None)
        for model in _all_models()
        for info in model.model_fields.values()
        for item in info.metadata
    } - {None}
    assert len(patterns) == 3
    assert patterns <= set(PATTERN_TEXT)


def _messages(model: type[BaseModel], doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(doc)
    return {json_path(path): text for path, text in describe_errors(model, info.value.errors())}


TECH = ("shots", 0, "prompt_modules", "technical")


@pytest.mark.parametrize(
    ("where", "key", "value", "message"),
    [
        (("shots", 0), "shot_id", "../evil", "letters, digits, `_ . -`, at most 128 characters"),
        (("shots", 0), "shot_id", "a" * 129, "at most 128 characters"),
        (TECH, "aspect_ratio", "wide", "a ratio such as `16:9` or `2.39:1`, got 'wide'"),
        (TECH, "resolution", "big", "a size WIDTHxHEIGHT in pixels such as `1920x1080`"),
        (TECH, "steps", 0, "should be a whole number from 1 to 1000, got 0"),
        (TECH, "steps", 1001, "should be a whole number from 1 to 1000, got 1001"),
        (TECH, "steps", "many", "should be a whole number from 1 to 1000 (or null), got 'many'"),
        (TECH, "cfg_scale", 101, "should be a number from 0 to 100, got 101"),
        (TECH, "denoise", 0, "should be a number above 0 and at most 1, got 0"),
        (TECH, "seed", -1, "should be a whole number from 0 to 9223372036854775807, got -1"),
        (TECH, "sampler", 3, "should be text (or null), got 3"),
        (("shots", 0), "version", [1], "should be text or a whole number"),
        (("shots", 0), "shot_number", -1, "should be a whole number of at least 0, got -1"),
        (("shots", 0), "prompt_modules", "x", "should be an object ({...}), got 'x'"),
        (("shots", 0, "references", "controls", 0), "kind", "edge", "one of `pose`, `depth`"),
        (("shots", 0, "references", "controls", 0), "path", "", "must not be empty"),
        (("shots", 0, "references", "controls", 0), "strength", 3, "a number from 0 to 2"),
        (("shots", 0, "references", "controls", 0), "preprocess", "maybe", "true or false"),
        (("shots", 0, "references", "loras", 0), "strength_model", 11, "from -10 to 10"),
        (("shots", 0, "references"), "characters", "mara.png", "should be a list ([...])"),
    ],
)
def test_validation_messages_speak_to_people(
    where: tuple[str | int, ...], key: str, value: Any, message: str
) -> None:
    doc = copy.deepcopy(FULL_BOARD)
    node = doc
    for part in where:
        node = node[part]
    node[key] = value
    messages = _messages(Storyboard, doc)
    assert list(messages) == [json_path((*where, key))]
    text = messages[json_path((*where, key))]
    assert message in text
    assert "pattern" not in text and "input should" not in text.lower()


def test_missing_and_project_file_messages() -> None:
    doc = copy.deepcopy(FULL_PROJECT)
    del doc["config"]["global_seed"]
    doc["config"]["target_resolution"] = "1920"
    doc["shots_index"] = []
    messages = _messages(ProjectFileModel, doc)
    assert messages == {
        "config.global_seed": "is required",
        "config.target_resolution": "should be a size WIDTHxHEIGHT in pixels such as "
        "`1920x1080`, got '1920'",
        "shots_index": "should be an object ({...})",
    }


def _readme_section() -> str:
    text = (EXAMPLE.parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("## Storyboard fields")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_documents_every_storyboard_field() -> None:
    import re

    named = {
        part.removesuffix("[]")
        for span in re.findall(r"`([^`]+)`", _readme_section())
        for part in span.split(".")
    }
    for model in {m for _, _, m in BOARD_OBJECTS}:
        assert known_keys(model) <= named, model.__name__


def test_the_readme_examples_are_valid_shots_without_unknown_keys() -> None:
    import re

    blocks = re.findall(r"```json\n(.*?)```", _readme_section(), flags=re.DOTALL)
    assert len(blocks) == 4
    uses = set()
    for block in blocks:
        shot = json.loads(block)
        Shot.model_validate(shot)
        assert list(unknown_keys(shot, Shot)) == []
        uses |= {k for k, v in shot["references"].items() if v}
    assert uses == {"loras", "controls", "characters", "init_image"}
