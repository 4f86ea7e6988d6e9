"""widgets_values -> API inputs: dynamic combos, forceInput, converted widgets, dicts, lists.

Real saved files from ComfyUI_frontend browser_tests/assets/inputs/ where they exist (see
tests/data/workflows/ui/README.md); the node definitions they need that no recording holds are
in constructed_object_info.json, written from the nodes' Python source.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from storycore.emulator._nodedefs import load_data_json
from storycore.workflows import NodeCatalog, ui_to_api

UI_DIR = Path(__file__).resolve().parents[1] / "data" / "workflows" / "ui"


def load(name: str) -> Any:
    return json.loads((UI_DIR / name).read_text(encoding="utf-8"))


@cache
def catalog() -> NodeCatalog:
    return NodeCatalog(load_data_json("object_info.json"), load("constructed_object_info.json"))


def one_node(node: dict[str, Any]) -> dict[str, Any]:
    graph = ui_to_api({"nodes": [node], "links": []}, catalog(), "one.json")
    return graph[str(node["id"])]["inputs"]  # type: ignore[no-any-return]


def test_dynamic_combo_selected_option_and_its_inputs() -> None:
    # inputs/dynamic_combo.json: ResizeImageMaskNode's resize_type is a COMFY_DYNAMICCOMBO_V3;
    # "scale dimensions" brings width, height and crop, then scale_method follows.
    graph = ui_to_api(load("dynamic_combo.json"), catalog(), "dynamic_combo.json")
    assert graph["1"]["inputs"] == {
        "resize_type": "scale dimensions",
        "resize_type.width": 512,
        "resize_type.height": 512,
        "resize_type.crop": "center",
        "scale_method": "area",
    }


def test_dynamic_combo_other_option_takes_fewer_values() -> None:
    node = load("dynamic_combo.json")["nodes"][0]
    node["widgets_values"] = ["scale by multiplier", 1.5, "lanczos"]
    assert one_node(node) == {
        "resize_type": "scale by multiplier",
        "resize_type.multiplier": 1.5,
        "scale_method": "lanczos",
    }


def test_force_input_saved_by_an_old_front_end_keeps_its_values() -> None:
    # inputs/force_input.json: int_input and float_input are forceInput, yet that front end
    # saved them as converted widgets with values [0, 1, 0].
    graph = ui_to_api(load("force_input.json"), catalog(), "force_input.json")
    assert graph["5"]["inputs"] == {"int_input": 0, "int_input_widget": 1, "float_input": 0}


def test_force_input_today_owns_no_value() -> None:
    # Constructed: how the current front end saves the node (socket-only inputs, one value).
    node = load("force_input.json")["nodes"][0]
    node["inputs"] = [{"name": n, "type": t, "link": None} for n, t in (("int_input", "INT"),)]
    node["widgets_values"] = [7]
    assert one_node(node) == {"int_input_widget": 7}


def test_converted_widget_takes_the_primitive_nodes_value() -> None:
    # inputs/old_workflow_converted_input.json: strength is a widget converted to an input and
    # fed by a PrimitiveNode; its value (changed here from 1 to 0.75 to tell it apart from the
    # widget's own) replaces the widget value, and the primitive is not sent.
    data = load("old_workflow_converted_input.json")
    data["nodes"][1]["widgets_values"][0] = 0.75
    graph = ui_to_api(data, catalog(), "old.json")
    assert list(graph) == ["1"]
    assert graph["1"]["inputs"] == {"strength": 0.75, "start_percent": 0, "end_percent": 1}


def test_widgets_values_as_an_object() -> None:
    # Constructed: the shape some packs (e.g. VideoHelperSuite) save; UI-only keys are dropped.
    node = {
        "id": 4,
        "type": "SaveImage",
        "mode": 0,
        "inputs": [],
        "widgets_values": {"filename_prefix": "shot", "videopreview": {"hidden": False}},
    }
    assert one_node(node) == {"filename_prefix": "shot"}


def test_list_values_are_wrapped_so_they_do_not_read_as_links() -> None:
    node = {"id": 4, "type": "SaveImage", "mode": 0, "widgets_values": {"filename_prefix": [1]}}
    assert one_node(node) == {"filename_prefix": {"__value__": [1]}}


def test_seed_control_value_and_upload_value_are_skipped() -> None:
    sampler = {
        "id": 3,
        "type": "KSampler",
        "mode": 0,
        "widgets_values": [42, "increment", 30, 6.5, "euler", "karras", 0.8],
    }
    assert one_node(sampler) == {
        "seed": 42,
        "steps": 30,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "karras",
        "denoise": 0.8,
    }
    loader = {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["a.png", "image"]}
    assert one_node(loader) == {"image": "a.png"}
