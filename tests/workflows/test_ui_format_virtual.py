"""Virtual nodes, muted and bypassed nodes, Get/Set pairs, errors; and comfy-cli's reference.

The base file is workflow_templates' SD1.5 text-to-image as comfy-cli keeps it
(tests/data/workflows/ui/sd15_ui_workflow.json) with the API output that ComfyUI's
/workflow/convert endpoint produced for it (sd15_expected_api.json, comfy-cli's
TestFixtureParity). Muting, bypassing, reroutes and Get/Set nodes are added to copies of it:
no real saved file with them was at hand.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from storycore.errors import TemplateError
from storycore.workflows import NodeCatalog, ui_to_api

UI_DIR = Path(__file__).resolve().parents[1] / "data" / "workflows" / "ui"


def load(name: str) -> Any:
    return json.loads((UI_DIR / name).read_text(encoding="utf-8"))


@cache
def catalog() -> NodeCatalog:
    return NodeCatalog(load("sd15_object_info.json"))


def sd15() -> dict[str, Any]:
    return load("sd15_ui_workflow.json")  # type: ignore[no-any-return]


def node(data: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["id"] == node_id)


def link_into(data: dict[str, Any], target: int, slot: int) -> list[Any]:
    return next(lk for lk in data["links"] if lk[3] == target and lk[4] == slot)


def test_same_result_as_the_comfy_cli_reference() -> None:
    graph = ui_to_api(sd15(), catalog(), "sd15.json")
    assert graph == load("sd15_expected_api.json")  # MarkdownNotes dropped, titles the same


def test_muted_node_is_left_out_with_the_inputs_it_fed() -> None:
    data = sd15()
    node(data, 8)["mode"] = 2  # VAEDecode
    graph = ui_to_api(data, catalog(), "sd15.json")
    assert "8" not in graph
    assert "images" not in graph["9"]["inputs"]


def test_bypassed_node_passes_the_matching_input_through() -> None:
    data = sd15()
    node(data, 3)["mode"] = 4  # KSampler: LATENT out, so latent_image (LATENT) passes
    graph = ui_to_api(data, catalog(), "sd15.json")
    assert "3" not in graph
    assert graph["8"]["inputs"]["samples"] == ["5", 0]


def test_reroute_node_and_native_reroute_are_transparent() -> None:
    expected = ui_to_api(sd15(), catalog(), "sd15.json")
    data = sd15()
    vae_link = link_into(data, 8, 1)  # CheckpointLoader VAE -> VAEDecode
    data["nodes"].append(
        {
            "id": 50,
            "type": "Reroute",
            "mode": 0,
            "inputs": [{"name": "", "type": "*", "link": 900}],
            "outputs": [{"name": "", "type": "VAE", "links": [vae_link[0]]}],
        }
    )
    data["links"].append([900, vae_link[1], vae_link[2], 50, 0, "VAE"])
    vae_link[1], vae_link[2] = 50, 0
    # a native reroute (schema 1 style, kept in extra.reroutes) only changes how a link is drawn
    clip_link = link_into(data, 6, 0)
    data["extra"]["reroutes"] = [{"id": 1, "pos": [0, 0], "linkIds": [clip_link[0]]}]
    data["extra"]["linkExtensions"] = [{"id": clip_link[0], "parentId": 1}]
    assert ui_to_api(data, catalog(), "sd15.json") == expected


def test_get_and_set_nodes_resolve_to_the_setters_source() -> None:
    data = sd15()
    model_link = link_into(data, 3, 0)  # CheckpointLoader MODEL -> KSampler
    data["nodes"] += [
        {
            "id": 60,
            "type": "SetNode",
            "mode": 0,
            "inputs": [{"name": "MODEL", "type": "MODEL", "link": 901}],
            "outputs": [{"name": "*", "type": "*", "links": []}],
            "widgets_values": ["base_model"],
        },
        {
            "id": 61,
            "type": "GetNode",
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "MODEL", "type": "MODEL", "links": [model_link[0]]}],
            "widgets_values": ["base_model"],
            "title": "Get_base_model",
        },
    ]
    data["links"].append([901, model_link[1], model_link[2], 60, 0, "MODEL"])
    model_link[1], model_link[2] = 61, 0
    graph = ui_to_api(copy.deepcopy(data), catalog(), "sd15.json")
    assert graph["3"]["inputs"]["model"] == ["4", 0]
    assert "60" not in graph and "61" not in graph
    node(data, 60)["widgets_values"] = ["other"]
    with pytest.raises(TemplateError) as err:
        ui_to_api(data, catalog(), "sd15.json")
    assert "node 61 (GetNode, titled 'Get_base_model') reads 'base_model'" in err.value.message


def test_legacy_group_node_is_refused_by_name() -> None:
    data = sd15()
    data["nodes"].append({"id": 70, "type": "workflow>Upscale", "mode": 0, "title": "Up"})
    with pytest.raises(TemplateError) as err:
        ui_to_api(data, catalog(), "sd15.json")
    assert "node 70 (workflow>Upscale, titled 'Up') is a legacy group node" in err.value.message


def test_reroute_loop_is_a_clear_error() -> None:
    data = sd15()
    data["nodes"] += [
        {"id": 80, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 81}]},
        {"id": 81, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 80}]},
    ]
    data["links"] += [[80, 80, 0, 81, 0, "*"], [81, 81, 0, 80, 0, "*"]]
    link_into(data, 8, 1)[1] = 80
    with pytest.raises(TemplateError, match="form a loop"):
        ui_to_api(data, catalog(), "sd15.json")


def test_dangling_link_reads_as_unconnected_and_bad_ids_are_named() -> None:
    data = sd15()
    data["links"].remove(link_into(data, 9, 0))  # SaveImage's input keeps link id 9
    assert "images" not in ui_to_api(data, catalog(), "sd15.json")["9"]["inputs"]
    link_into(data, 8, 0)[0] = "²"
    with pytest.raises(TemplateError, match="not a whole number"):
        ui_to_api(data, catalog(), "sd15.json")
