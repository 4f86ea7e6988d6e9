"""UI -> API conversion of subgraph workflows, on real saved files (tests/data/workflows/ui/).

Execution ids are the front end's: instance ids from the root, then the node's id, joined by
``:`` (ComfyUI_frontend ExecutableNodeDTO.ts @ 01b3aeae).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from storycore.emulator._nodedefs import load_data_json
from storycore.errors import TemplateError
from storycore.workflows import NodeCatalog, ui_to_api

UI_DIR = Path(__file__).resolve().parents[1] / "data" / "workflows" / "ui"


def load(name: str) -> Any:
    return json.loads((UI_DIR / name).read_text(encoding="utf-8"))


@cache
def qwen_catalog() -> NodeCatalog:
    return NodeCatalog(load("qwen_object_info.json"))


@cache
def core_and_test_nodes() -> NodeCatalog:
    """ComfyUI 0.3.64's core nodes plus the constructed test-node entries."""
    return NodeCatalog(load_data_json("object_info.json"), load("constructed_object_info.json"))


def test_nested_subgraph_ids_are_the_front_ends() -> None:
    # browser_tests/assets/execution/nested-subgraph-test.json: instance 10 holds TestSleep 3
    # and instance 5, which holds TestSleep 6 and TestAsyncProgressNode 7.
    graph = ui_to_api(load("nested-subgraph-test.json"), core_and_test_nodes(), "nested.json")
    assert list(graph) == ["1", "10:3", "10:5:6", "10:5:7", "11"]
    assert graph["10:3"]["inputs"]["value"] == ["1", 0]  # in through instance 10's input
    assert graph["10:5:6"]["inputs"]["value"] == ["10:3", 0]  # into the nested instance
    assert graph["10:5:7"]["inputs"]["value"] == ["10:5:6", 0]
    assert graph["11"]["inputs"]["images"] == ["10:5:7", 0]  # out through two output boxes
    assert graph["10:5:7"]["inputs"]["steps"] == 10
    assert all(not k.startswith(("10", "5")) or ":" in k for k in graph)  # no instance node


def test_schema_1_file_with_object_links_converts_the_same() -> None:
    # Constructed from the nested file: the root saved as schema 1 (version 1, state, links as
    # objects), as the front end can write it; no real schema-1 root file was at hand.
    data = load("nested-subgraph-test.json")
    expected = ui_to_api(data, core_and_test_nodes(), "nested.json")
    v1 = copy.deepcopy(data)
    for key in ("last_node_id", "last_link_id"):
        del v1[key]
    v1["version"] = 1
    v1["state"] = {"lastNodeId": 12, "lastLinkId": 10, "lastGroupId": 0, "lastRerouteId": 0}
    v1["links"] = [
        {"id": i, "origin_id": o, "origin_slot": os, "target_id": t, "target_slot": ts, "type": k}
        for i, o, os, t, ts, k in data["links"]
    ]
    assert ui_to_api(v1, core_and_test_nodes(), "v1.json") == expected


def test_promoted_widgets_and_exposed_inputs_of_a_real_template() -> None:
    # workflow_templates 02_qwen_Image_edit_subgraphed.json (via comfy-cli's fixtures): node
    # 141 is an instance with 12 exposed inputs; its widgets_values hold the 9 promoted ones.
    graph = ui_to_api(load("02_qwen_Image_edit_subgraphed.json"), qwen_catalog(), "qwen.json")
    assert "141" not in graph and "119" not in graph  # instance and MarkdownNote
    inner = {k for k in graph if k.startswith("141:")}
    assert len(inner) == 11  # every node of the definition
    # promoted values on the instance win over the inner nodes' own values
    assert graph["141:137"]["inputs"]["seed"] == 392667428726572  # inner node says 111887...
    assert graph["141:132"]["inputs"]["prompt"].startswith("Change the style of the image")
    assert graph["141:128"]["inputs"]["prompt"] == ""
    assert graph["141:127"]["inputs"]["unet_name"] == "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
    # linked instance inputs win over their widget values (width/height from GetImageSize)
    assert graph["141:142"]["inputs"]["width"] == ["144", 0]
    assert graph["141:142"]["inputs"]["height"] == ["144", 1]
    # one exposed input fans out to two inner nodes; unlinked exposed IMAGE inputs are left out
    assert graph["141:128"]["inputs"]["image1"] == ["143", 0]
    assert graph["141:132"]["inputs"]["image1"] == ["143", 0]
    assert "image2" not in graph["141:132"]["inputs"]
    assert graph["60"]["inputs"]["images"] == ["141:138", 0]
    assert graph["141:137"]["inputs"]["steps"] == 4  # the "randomize" companion skipped


def test_each_instance_of_one_definition_keeps_its_own_promoted_value() -> None:
    # browser_tests/assets/subgraphs/subgraph-multi-instance-promoted-text-values.json: three
    # instances of one definition; "text" is promoted (not among the saved instance inputs).
    data = load("subgraph-multi-instance-promoted-text-values.json")
    graph = ui_to_api(data, core_and_test_nodes(), "multi.json")
    texts = {
        k: v["inputs"]["text"] for k, v in graph.items() if v["class_type"] == "CLIPTextEncode"
    }
    assert texts == {"11:10": "Alpha\n", "12:10": "Beta\n", "13:10": "Gamma\n"}
    assert "clip" not in graph["11:10"]["inputs"]  # its exposed input is linked to nothing


def test_without_promoted_values_the_inner_widgets_count() -> None:
    data = load("02_qwen_Image_edit_subgraphed.json")
    instance = next(n for n in data["nodes"] if n["id"] == 141)
    del instance["widgets_values"]
    graph = ui_to_api(data, qwen_catalog(), "qwen.json")
    assert graph["141:137"]["inputs"]["seed"] == 1118877715456453


def test_nested_subgraphs_with_proxy_widgets() -> None:
    # comfy-cli tests/comfy_cli/fixtures/subgraph_template_ui.json: instance 10 holds
    # instance 3 (proxyWidgets with "-1" entries) holding RegexExtract, SimpleMath+, ...
    data = load("subgraph_template_ui.json")
    data["nodes"] = [n for n in data["nodes"] if n["id"] != 19]  # its definition is absent
    graph = ui_to_api(data, NodeCatalog(load("subgraph_object_info.json")), "sub.json")
    assert {"10:3:1", "10:3:6", "10:3:9", "10:8", "10:9"} <= set(graph)
    assert "10:3:5" not in graph  # a MarkdownNote two levels down
    assert graph["10:3:9"]["inputs"]["a"] == ["10:3:6", 0]
    assert graph["10:9"]["inputs"]["prompt"] == ["10:3:1", 0]  # out of the nested instance
    assert graph["10:3:6"]["inputs"] == {"value": 1}  # "fixed" companion skipped


def test_missing_subgraph_definition_names_the_instance() -> None:
    # The same real file: instance 19's definition holds an instance of 6d92985e-..., which is
    # not among the file's definitions.
    with pytest.raises(TemplateError) as err:
        ui_to_api(
            load("subgraph_template_ui.json"), NodeCatalog(load("subgraph_object_info.json")), "s"
        )
    assert "node 19:3 (6d92985e-3e1e-49e2-acea-91c5259d86a8)" in err.value.message
    assert "definition is not in the file" in err.value.message


@pytest.mark.parametrize("mode", [2, 4])
def test_muted_or_bypassed_instance_drops_its_inner_nodes(mode: int) -> None:
    data = load("02_qwen_Image_edit_subgraphed.json")
    next(n for n in data["nodes"] if n["id"] == 141)["mode"] = mode
    graph = ui_to_api(data, qwen_catalog(), "qwen.json")
    assert not [k for k in graph if k.startswith("141")]
    if mode == 2:  # muted: SaveImage's input is left out
        assert "images" not in graph["60"]["inputs"]
    else:  # bypassed: the instance's IMAGE input passes through
        assert graph["60"]["inputs"]["images"] == ["143", 0]


def test_a_muted_nested_instance_drops_only_its_own_nodes() -> None:
    data = load("nested-subgraph-test.json")
    data["definitions"]["subgraphs"][0]["nodes"][1]["mode"] = 2  # instance 5 inside 10
    graph = ui_to_api(data, core_and_test_nodes(), "nested.json")
    assert list(graph) == ["1", "10:3", "11"]
    assert "images" not in graph["11"]["inputs"]


def test_inner_bypassed_node_passes_through_inside_a_subgraph() -> None:
    data = load("02_qwen_Image_edit_subgraphed.json")
    definition = data["definitions"]["subgraphs"][0]
    next(n for n in definition["nodes"] if n["id"] == 124)["mode"] = 4  # CFGNorm
    graph = ui_to_api(data, qwen_catalog(), "qwen.json")
    assert "141:124" not in graph
    assert graph["141:137"]["inputs"]["model"] == ["141:131", 0]


def test_a_subgraph_inside_itself_is_a_clear_error() -> None:
    # Constructed: no saved file does this (the front end refuses to make it).
    data = load("nested-subgraph-test.json")
    inner = data["definitions"]["subgraphs"][1]
    inner["nodes"].append(
        {
            "id": 9,
            "type": "test-subgraph-1",
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "title": "Again",
        }
    )
    with pytest.raises(TemplateError) as err:
        ui_to_api(data, core_and_test_nodes(), "loop.json")
    assert "node 10:5:9 (test-subgraph-1, titled 'Again') uses subgraph test-subgraph-1" in (
        err.value.message
    )


def test_unknown_class_inside_a_subgraph_names_the_node() -> None:
    data = load("nested-subgraph-test.json")
    graph_nodes = data["definitions"]["subgraphs"][1]["nodes"]
    graph_nodes[1]["type"] = "NoSuchNode"
    graph_nodes[1]["title"] = "Progress"
    with pytest.raises(TemplateError) as err:
        ui_to_api(data, core_and_test_nodes(), "nested.json")
    assert "NoSuchNode: node 10:5:7 (NoSuchNode, titled 'Progress')" in err.value.message
    assert err.value.exit_code == 6 and err.value.where == "nested.json"


def test_shared_definitions_nested_many_times_are_bounded() -> None:
    # Constructed: ten instances of the previous definition in each of 12 nested definitions
    # stand for 10**12 instances in a few kilobytes; the conversion stops with a clear error.
    subgraphs: list[dict[str, Any]] = [{"id": "sg0", "nodes": [], "links": []}]
    for level in range(1, 13):
        nodes = [{"id": i, "type": f"sg{level - 1}", "mode": 0} for i in range(10)]
        subgraphs.append({"id": f"sg{level}", "nodes": nodes, "links": []})
    data = {
        "nodes": [{"id": 1, "type": "sg12", "mode": 0}],
        "links": [],
        "definitions": {"subgraphs": subgraphs},
    }
    with pytest.raises(TemplateError, match="more than 20000 nodes or subgraph instances"):
        ui_to_api(data, core_and_test_nodes(), "bomb.json")
