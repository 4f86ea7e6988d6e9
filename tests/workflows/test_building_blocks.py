"""Graph utilities, options, node definitions, node-pack table, complexity estimates."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storycore.errors import ConfigError, WorkflowError
from storycore.workflows import (
    Calibration,
    GraphOptions,
    MeasuredTiming,
    NodeCatalog,
    analyze_graph,
    analyze_project,
    bind_uploads,
    build_panel_graph,
    make_filename_prefix,
    pack_for_class,
    safe_prefix_part,
    types_match,
    workflow_fingerprint,
)
from storycore.workflows._nodedefs import parse_input

from ._support import catalog_all, load_reference_json, object_info_all, panel

REFS = (Path("refs/a.png"), Path("refs/b.png"))


def test_bind_uploads_writes_server_names_into_a_copy() -> None:
    built = build_panel_graph(panel(references=REFS), GraphOptions(), node_classes=catalog_all())
    names = {REFS[0]: "storycore/a.png", REFS[1]: "storycore/b (1).png"}
    graph = bind_uploads(built, names)
    loaded = sorted(n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage")
    assert loaded == ["storycore/a.png", "storycore/b (1).png"]
    assert all(  # the built graph keeps its placeholders
        n["inputs"]["image"].startswith("storycore-upload://")
        for n in built.graph.values()
        if n["class_type"] == "LoadImage"
    )
    with pytest.raises(WorkflowError) as err:
        bind_uploads(built, {REFS[0]: "a.png"})
    assert "refs/b.png" in err.value.message


def test_fingerprint_covers_seed_and_image_content() -> None:
    p = panel(references=REFS)
    built = build_panel_graph(p, GraphOptions(), node_classes=catalog_all())
    hashes = {REFS[0]: "aa" * 32, REFS[1]: "bb" * 32}
    key = workflow_fingerprint(built, hashes)
    assert key == workflow_fingerprint(built, dict(hashes))
    assert key != workflow_fingerprint(built, {**hashes, REFS[1]: "cc" * 32})
    reseeded = build_panel_graph(dataclasses.replace(p, seed=p.seed + 1), GraphOptions())
    assert workflow_fingerprint(reseeded, hashes) != key
    moved = dataclasses.replace(p, references=(Path("/elsewhere/a.png"), Path("/x/b.png")))
    moved_built = build_panel_graph(moved, GraphOptions(), node_classes=catalog_all())
    moved_hashes = {moved.references[0]: "aa" * 32, moved.references[1]: "bb" * 32}
    assert workflow_fingerprint(moved_built, moved_hashes) == key  # the folder may move
    with pytest.raises(WorkflowError):
        workflow_fingerprint(built, {REFS[0]: "aa" * 32})


@given(st.text(max_size=40), st.text(max_size=40), st.integers(0, 10**6))
def test_filename_prefix_parts_are_always_safe(project: str, shot: str, version: int) -> None:
    prefix = make_filename_prefix("storycore", project, shot, version)
    parts = prefix.split("/")
    assert len(parts) == 4 and parts[3] == f"v{version}"
    for part in parts:
        assert part and part not in (".", "..") and not part.startswith(".")
        assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in part)


def test_safe_prefix_part_examples() -> None:
    assert safe_prefix_part("../../etc") == "_.._etc"
    assert safe_prefix_part("   ") == "x"
    assert make_filename_prefix("storycore", "My Film", "s010", 3) == "storycore/My_Film/s010/v3"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("controlnet_strength", 2.5),
        ("controlnet_start", -0.1),
        ("ipadapter_weight", float("nan")),
        ("ipadapter_weight_type", "standard"),
        ("ipadapter_preset", "STANDARD"),
        ("ipadapter_mode", "magic"),
        ("img2img_denoise", 0.0),
        ("canny_low", True),
        ("filename_root", ""),
        ("depth_preprocessor", "Depth"),
        ("preprocess", "yes"),
    ],
)
def test_graph_options_name_the_bad_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        GraphOptions(**{field: value})
    assert err.value.where == f"GraphOptions.{field}"
    assert err.value.exit_code == 2


def test_graph_options_order_checks() -> None:
    with pytest.raises(ConfigError, match="controlnet_start"):
        GraphOptions(controlnet_start=0.9, controlnet_end=0.2)
    assert GraphOptions().controlnet_model("depth") == "control_v11f1p_sd15_depth.pth"


def test_both_combo_shapes_parse_to_choices() -> None:
    old = parse_input("x", "required", [["a", "b"], {"default": "a"}], "t")
    new = parse_input("x", "required", ["COMBO", {"options": ["a", "b"], "default": "a"}], "t")
    assert old.type == new.type == "COMBO"
    assert old.choices == new.choices == ("a", "b")
    assert old.default == new.default == "a"
    with pytest.raises(WorkflowError):
        parse_input("x", "required", [], "t")


def test_every_recorded_class_parses() -> None:
    catalog = NodeCatalog(object_info_all())
    assert len(catalog) == 597
    combos_new = 0
    for name in catalog:
        definition = catalog[name]
        assert definition.name == name
        assert set(definition.input_order) <= set(definition.inputs)
        combos_new += sum(
            1 for s in definition.inputs.values() if s.type == "COMBO" and s.choices is not None
        )
    assert combos_new > 0
    ksampler = catalog["KSampler"].inputs
    assert ksampler["steps"].min == 1 and ksampler["steps"].max == 10000
    assert ksampler["seed"].control_after_generate
    assert catalog["LoadImage"].inputs["image"].image_upload
    assert catalog["SaveImage"].output_node


def test_pack_table_matches_the_recorded_index() -> None:
    index = load_reference_json("custom_nodes_index.json")
    for pack in index["packs"]:
        for class_name in pack["classes"]:
            assert pack_for_class(class_name) == (
                pack["pack"],
                f"https://github.com/{pack['repo']}",
            )
    assert pack_for_class("KSampler") is None
    assert pack_for_class("VHS_VideoCombine") is not None


def test_link_type_rules() -> None:
    assert types_match("IMAGE", "IMAGE")
    assert types_match("IMAGE", "*") and types_match("*", "MODEL")
    assert types_match("INT,FLOAT", "FLOAT")
    assert not types_match("LATENT", "IMAGE")


STATS = load_reference_json("system_stats.json")["body"]


def test_complexity_counts_and_calibrates() -> None:
    built = build_panel_graph(panel(steps=20, width=512, height=512), GraphOptions())
    cpu = Calibration.from_system_stats(STATS)
    assert cpu.device_type == "cpu" and cpu.vram_total == 25276063744 and not cpu.measured
    result = analyze_graph("s1", built.graph, cpu)
    assert result.node_count == 7
    assert result.sampler_steps == 20
    assert result.latent_pixels == 512 * 512
    assert result.models == (("checkpoint", "sd15.safetensors"),)
    assert result.est_seconds > 60  # CPU: slow
    assert any("fewer steps" in s for s in result.suggestions)
    measured = Calibration.from_system_stats(
        STATS, [MeasuredTiming(1.0, 2.0), MeasuredTiming(2.0, 4.0)]
    )
    assert measured.measured and measured.seconds_per_step_mp == 2.0
    fast = analyze_graph("s1", built.graph, measured)
    assert fast.est_seconds == pytest.approx(2.0 * 20 * 512 * 512 / 1e6)


def test_project_suggests_grouping_by_checkpoint() -> None:
    order = ["sd15.safetensors", "dreamshaper_8.safetensors", "sd15.safetensors"]
    graphs = [
        (f"s{i}", build_panel_graph(panel(shot_id=f"s{i}", checkpoint=c), GraphOptions()).graph)
        for i, c in enumerate(order)
    ]
    project = analyze_project(graphs, STATS)
    assert project.checkpoint_switches == 2
    assert any("grouped by checkpoint" in s for s in project.suggestions)
    assert project.to_dict()["device"]["type"] == "cpu"
    small = Calibration(vram_total=2 * 1024**3)
    heavy = analyze_graph("s1", graphs[0][1], small)
    assert any("GiB" in s for s in heavy.suggestions)
