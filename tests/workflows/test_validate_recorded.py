"""The validator agrees with the real ComfyUI on every recorded validation case."""

from __future__ import annotations

import re
from typing import Any

import pytest

from storycore.workflows import validate_graph

from ._support import catalog_all, catalog_core, load_reference_json

# ComfyUI's error type -> the codes our validator may use for the same fault
EQUIVALENT: dict[str, set[str]] = {
    "required_input_missing": {"required_input_missing"},
    "value_smaller_than_min": {"value_smaller_than_min"},
    "value_bigger_than_max": {"value_bigger_than_max"},
    "invalid_input_type": {"invalid_input_type"},
    "exception_during_validation": {"link_to_missing_node"},
    "bad_linked_input": {"bad_linked_input"},
    "return_type_mismatch": {"return_type_mismatch"},
    "value_not_in_list": {"value_not_in_list", "model_missing"},
    "custom_validation_failed": {"image_not_on_server"},
}


def _core_cases() -> list[tuple[str, dict[str, Any]]]:
    data = load_reference_json("validation_errors.json")
    return [(k, v) for k, v in data.items() if isinstance(v, dict) and "request_prompt" in v]


def _custom_cases() -> list[tuple[str, dict[str, Any]]]:
    data = load_reference_json("custom_nodes_validation.json")
    return [(c["case"], c) for c in data["cases"]]


def _check_against_server(
    graph: dict[str, Any], status: int, body: dict[str, Any], catalog: Any
) -> None:
    problems = validate_graph(graph, catalog, None, shot_id="s1")
    errors = [p for p in problems if p.severity == "error"]
    assert all(p.shot_id == "s1" for p in problems)
    error = body.get("error") or {}
    if error.get("type") == "invalid_prompt":
        node_id = re.search(r"#(\w+)", error["details"]).group(1)  # type: ignore[union-attr]
        codes = {p.code for p in errors if p.node_id == node_id}
        assert codes & {"missing_node_class", "missing_class_type"}, problems
        return
    if error.get("type") == "prompt_no_outputs":
        assert [p.code for p in errors] == ["prompt_no_outputs"]
        return
    expected: dict[str, set[str]] = {}
    for node_id, entry in (body.get("node_errors") or {}).items():
        for item in entry["errors"]:
            expected.setdefault(node_id, set()).update(EQUIVALENT[item["type"]])
    for node_id, codes in expected.items():
        found = {p.code for p in problems if p.node_id == node_id}
        assert found & codes, f"node {node_id}: expected one of {codes}, got {problems}"
    if status == 200 and not expected:
        assert errors == [], errors
    # nothing reported on nodes the server found fine
    assert {p.node_id for p in errors} <= set(expected), problems


@pytest.mark.parametrize(("name", "case"), _core_cases(), ids=[n for n, _ in _core_cases()])
def test_core_validation_cases(name: str, case: dict[str, Any]) -> None:
    _check_against_server(case["request_prompt"], case["status"], case["body"], catalog_core())


@pytest.mark.parametrize(("name", "case"), _custom_cases(), ids=[n for n, _ in _custom_cases()])
def test_custom_node_validation_cases(name: str, case: dict[str, Any]) -> None:
    _check_against_server(case["request"]["prompt"], case["status"], case["body"], catalog_all())


def test_each_ipadapter_bad_value_is_reported_once_per_input() -> None:
    case = dict(_custom_cases())["c_bad_values"]
    problems = validate_graph(case["request"]["prompt"], catalog_all(), None)
    on_23 = sorted((p.input_name, p.code) for p in problems if p.node_id == "23")
    assert on_23 == [
        ("embeds_scaling", "value_not_in_list"),
        ("weight", "value_bigger_than_max"),
        ("weight_type", "value_not_in_list"),
    ]


def test_unified_loader_passes_server_validation_but_not_ours() -> None:
    case = dict(_custom_cases())["e_unified_loader_models_missing"]
    assert case["status"] == 200
    graph = case["request"]["prompt"]
    problems = validate_graph(graph, catalog_all(), {"ipadapter": [], "clip_vision": []})
    missing = [p for p in problems if p.code == "ipadapter_models_missing"]
    assert {p.node_id for p in missing} == {"21"}
    assert len(missing) == 2  # the ipadapter file and the clip vision file
    ok = {
        "ipadapter": ["ip-adapter_sd15.safetensors"],
        "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
        "checkpoints": ["tiny-random-sd15.safetensors"],
    }
    assert validate_graph(graph, catalog_all(), ok) == []


def test_misspelled_class_names_the_pack_or_the_near_name() -> None:
    graph = dict(_custom_cases())["b2_case_IPadapterModelLoader"]["request"]["prompt"]
    (problem,) = [p for p in validate_graph(graph, catalog_all(), None) if p.node_id == "21"]
    assert problem.code == "missing_node_class"
    assert "IPAdapterModelLoader" in (problem.hint or "")
    # with only the core classes, the right class is missing too and the pack is named
    core = validate_graph(graph, catalog_core(), None)
    adv = [p for p in core if p.node_id == "23"]
    assert adv and adv[0].code == "missing_node_class"
    assert "ComfyUI_IPAdapter_plus" in (adv[0].hint or "")
