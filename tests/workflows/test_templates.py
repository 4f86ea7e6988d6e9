"""User templates: binding files, title/id lookup, clear errors, UI-format conversion."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from storycore.errors import TemplateError
from storycore.panels import ControlImage
from storycore.workflows import (
    GraphOptions,
    apply_template,
    build_panel_graph,
    load_template,
    template_from_data,
    ui_to_api,
    validate_graph,
)

from ._support import EXAMPLES_DIR, MODELS, catalog_all, catalog_core, panel

API = json.loads((EXAMPLES_DIR / "sdxl_character.api.json").read_text(encoding="utf-8"))
UI = json.loads((EXAMPLES_DIR / "sd15_pose.ui.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("binding", ["sdxl_character.binding.toml", "sd15_pose.binding.json"])
def test_examples_load_and_pass_preflight(binding: str) -> None:
    template = load_template(EXAMPLES_DIR / binding, catalog_all())
    assert validate_graph(template.graph, catalog_all(), MODELS) == []
    assert template.output_node_ids == ("9",)


def test_api_template_needs_no_object_info() -> None:
    template = load_template(EXAMPLES_DIR / "sdxl_character.binding.toml")
    assert template.name == "sdxl-character"
    assert template.values["seed"][0].node_id == "3"
    assert template.references[0].node_id == "10"


def test_ui_template_without_object_info_is_refused() -> None:
    with pytest.raises(TemplateError) as err:
        load_template(EXAMPLES_DIR / "sd15_pose.binding.json")
    assert "object_info" in err.value.message
    assert "sd15_pose.binding.json" in (err.value.where or "")


def test_ui_conversion_resolves_reroute_primitive_and_drops_note() -> None:
    graph = ui_to_api(UI, catalog_all(), "ui.json")
    assert sorted(graph, key=int) == ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]
    assert graph["8"]["inputs"]["vae"] == ["4", 2]  # through the Reroute
    assert graph["3"]["inputs"]["seed"] == 123456  # from the PrimitiveNode
    assert graph["3"]["inputs"]["steps"] == 25  # "fixed" companion value skipped
    assert graph["3"]["inputs"]["sampler_name"] == "euler_ancestral"
    assert graph["11"]["inputs"] == {"image": "example.png"}
    assert graph["12"]["inputs"]["end_percent"] == 0.85
    assert graph["6"]["_meta"]["title"] == "Prompt"
    assert graph["4"]["_meta"]["title"] == "Load Checkpoint"  # display name when untitled


def test_ui_conversion_muted_and_bypassed_nodes() -> None:
    data = copy.deepcopy(UI)
    nodes = {n["id"]: n for n in data["nodes"]}
    nodes[12]["mode"] = 4  # bypass the ControlNet apply: conditioning passes through
    nodes[14]["mode"] = 2  # mute the note (already virtual)
    graph = ui_to_api(data, catalog_all(), "ui.json")
    assert "12" not in graph
    assert graph["3"]["inputs"]["positive"] == ["6", 0]
    assert graph["3"]["inputs"]["negative"] == ["7", 0]


def test_ui_conversion_names_missing_classes_and_their_pack() -> None:
    data = copy.deepcopy(UI)
    data["nodes"].append(
        {"id": 20, "type": "IPAdapterAdvanced", "mode": 0, "inputs": [], "outputs": []}
    )
    with pytest.raises(TemplateError) as err:
        ui_to_api(data, catalog_core(), "ui.json")
    assert "IPAdapterAdvanced (from ComfyUI_IPAdapter_plus)" in err.value.message


def _panel_with(**kw: Any) -> Any:
    return panel(template="t", **kw)


def test_bindings_by_title_and_id_fill_the_panel_values() -> None:
    template = template_from_data(
        "t",
        API,
        {"prompt": "6.text", "seed": ["KSampler.seed"], "references": ["Character reference"]},
        object_info=catalog_all(),
    )
    p = _panel_with(references=(Path("refs/a.png"), Path("refs/b.png")))
    built = build_panel_graph(p, GraphOptions(), templates={"t": template})
    assert built.graph["6"]["inputs"]["text"] == p.positive
    assert built.graph["3"]["inputs"]["seed"] == p.seed
    assert built.graph["7"]["inputs"]["text"] == "blurry, lowres"  # unbound: kept
    assert built.graph["9"]["inputs"]["filename_prefix"] == "storycore/lighthouse/s010/v1"
    assert [u.local_path.name for u in built.uploads] == ["a.png"]
    assert any("1 of the shot's reference" in w for w in built.warnings)


def test_control_bindings_per_kind() -> None:
    template = load_template(EXAMPLES_DIR / "sd15_pose.binding.json", catalog_all())
    p = panel(
        template="sd15-pose",
        controls=(ControlImage("depth", Path("g/d.png")), ControlImage("pose", Path("g/p.png"))),
    )
    built = apply_template(template, p, GraphOptions())
    assert [(u.role, u.node_id, u.local_path.name) for u in built.uploads] == [
        ("control", "11", "p.png")
    ]
    assert any("depth control" in w for w in built.warnings)


@pytest.mark.parametrize(
    ("bindings", "fragment"),
    [
        ({"prompt": "Nope.text"}, "no node has the id or title 'Nope'"),
        ({"prompt": "Positive.txt"}, "has no input 'txt'"),
        ({"prompt": "Positive"}, "does not name both a node and an input"),
        ({"promt": "Positive.text"}, "unknown binding 'promt'"),
        ({"prompt": 7}, "a target must be a text or a table"),
        ({"prompt": []}, "lists no target"),
        ({"controls": {"sketch": ["Character reference"]}}, "unknown control kind 'sketch'"),
    ],
)
def test_binding_errors_name_the_binding(bindings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TemplateError) as err:
        template_from_data("t", API, bindings, object_info=catalog_all(), source="my.toml")
    assert fragment in err.value.message
    assert (err.value.where or "").startswith("my.toml")
    key = next(iter(bindings))
    assert f"binding {key}" in (err.value.where or "")


def test_ambiguous_title_is_refused() -> None:
    graph = copy.deepcopy(API)
    graph["7"]["_meta"]["title"] = "Positive"
    with pytest.raises(TemplateError) as err:
        template_from_data("t", graph, {"prompt": "Positive.text"})
    assert "names 2 nodes" in err.value.message


def test_unknown_template_on_a_panel() -> None:
    with pytest.raises(TemplateError) as err:
        build_panel_graph(panel(template="missing"), GraphOptions(), templates={})
    assert "missing" in err.value.message and err.value.where == "shot s010"


def test_binding_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        load_template(bad)
    assert err.value.where == str(bad)
    no_workflow = tmp_path / "nowf.toml"
    no_workflow.write_text('name = "x"\n', encoding="utf-8")
    with pytest.raises(TemplateError, match="names no workflow"):
        load_template(no_workflow)
    missing = tmp_path / "missing.json"
    missing.write_text('{"workflow": "gone.json"}', encoding="utf-8")
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(missing)
    junk = tmp_path / "junk.json"
    (tmp_path / "wf.json").write_text('{"a": 1}', encoding="utf-8")
    junk.write_text('{"workflow": "wf.json"}', encoding="utf-8")
    with pytest.raises(TemplateError, match="neither ComfyUI API format nor UI format"):
        load_template(junk)


def test_img2img_template_binds_the_init_image_and_its_denoise() -> None:
    graph = copy.deepcopy(API)
    graph["20"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "Init"},
    }
    graph["21"] = {
        "class_type": "VAEEncode",
        "inputs": {"pixels": ["20", 0], "vae": ["4", 2]},
        "_meta": {"title": "Encode"},
    }
    graph["3"]["inputs"]["latent_image"] = ["21", 0]
    del graph["5"]
    template = template_from_data(
        "i2i",
        graph,
        {"denoise": "KSampler.denoise", "init_image": "Init"},
        object_info=catalog_all(),
    )
    full = apply_template(template, panel(init_image=Path("frames/rough.png")), GraphOptions())
    assert full.graph["3"]["inputs"]["denoise"] == 0.6  # GraphOptions.img2img_denoise
    assert [(u.role, u.node_id, u.input_name) for u in full.uploads] == [("init", "20", "image")]
    partial = apply_template(
        template, panel(init_image=Path("f.png"), denoise=0.35), GraphOptions()
    )
    assert partial.graph["3"]["inputs"]["denoise"] == 0.35
    txt = apply_template(template, panel(), GraphOptions())
    assert txt.graph["3"]["inputs"]["denoise"] == 1.0 and txt.uploads == ()
    assert validate_graph(full.graph, catalog_all(), MODELS) == []


def test_legacy_group_nodes_are_refused_with_a_clear_message() -> None:
    # Subgraphs convert now (tests/workflows/test_ui_format_*.py); the older "workflow>" group
    # nodes (frontend before subgraphs) are refused by name, with the node named.
    data = copy.deepcopy(UI)
    data["nodes"].append({"id": 30, "type": "workflow>My group", "mode": 0, "inputs": []})
    with pytest.raises(TemplateError, match="legacy group node") as caught:
        ui_to_api(data, catalog_all(), "ui.json")
    assert "30" in str(caught.value)
