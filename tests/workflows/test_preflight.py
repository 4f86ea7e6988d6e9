"""The project preflight: one report, every problem with its shot and node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from storycore.errors import PreflightFailed
from storycore.panels import ControlImage, LoraSpec
from storycore.workflows import (
    GraphOptions,
    load_template,
    preflight_panels,
)

from ._support import (
    EXAMPLES_DIR,
    MODELS,
    catalog_core,
    load_reference_json,
    object_info_all,
    panel,
)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, color in (("ref", "red"), ("pose", "white"), ("init", "blue")):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 48), color).save(path)
        out[name] = path
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out["broken"] = broken
    out["missing"] = tmp_path / "nope.png"
    return out


def test_a_clean_project_has_no_problems(images: dict[str, Path]) -> None:
    panels = [
        panel(shot_id="s1", references=(images["ref"],)),
        panel(shot_id="s2", controls=(ControlImage("pose", images["pose"]),)),
        panel(shot_id="s3", init_image=images["init"]),
    ]
    report = preflight_panels(panels, object_info_all(), MODELS, GraphOptions())
    assert report.problems == ()
    assert report.ok and report.shots == ("s1", "s2", "s3")
    assert set(report.graphs) == {"s1", "s2", "s3"}
    report.raise_for_problems()  # no error
    assert report.complexity is not None and len(report.complexity.panels) == 3
    json.dumps(report.to_dict())  # JSON-friendly


def test_one_report_lists_every_problem_with_shot_and_node(images: dict[str, Path]) -> None:
    panels = [
        panel(shot_id="s1", checkpoint="sd15.safetenors"),  # typo
        panel(shot_id="s2", references=(images["missing"],)),
        panel(shot_id="s3", controls=(ControlImage("pose", images["broken"]),)),
        panel(shot_id="s4", loras=(LoraSpec("nope.safetensors"),), sampler="euler_a"),
        panel(shot_id="s5", template="not-declared"),
    ]
    report = preflight_panels(panels, object_info_all(), MODELS, GraphOptions())
    found = {(p.shot_id, p.node_id, p.code) for p in report.errors}
    assert ("s1", "1", "model_missing") in found
    assert ("s2", "5", "image_missing") in found
    assert ("s3", "4", "image_unreadable") in found
    assert ("s4", "2", "model_missing") in found
    assert ("s4", "6", "value_not_in_list") in found
    assert ("s5", None, "build_failed") in found
    typo = next(p for p in report.errors if p.shot_id == "s1")
    assert "sd15.safetensors" in (typo.hint or "")  # closest installed name
    with pytest.raises(PreflightFailed) as err:
        report.raise_for_problems()
    assert len(err.value.problems) == len(report.errors)
    assert err.value.exit_code == 6


def test_missing_node_packs_are_all_listed(images: dict[str, Path]) -> None:
    panels = [
        panel(shot_id="s1", references=(images["ref"],)),
        panel(shot_id="s2", references=(images["ref"],)),
    ]
    report = preflight_panels(panels, load_reference_json("object_info.json"), MODELS)
    missing = report.missing_classes()
    assert set(missing) == {"IPAdapterUnifiedLoader", "IPAdapterAdvanced"}
    assert missing["IPAdapterAdvanced"] == ["s1/6", "s2/6"]
    hints = {p.hint for p in report.errors if p.code == "missing_node_class"}
    assert all("ComfyUI_IPAdapter_plus" in (h or "") for h in hints)


def test_unified_loader_needs_model_files(images: dict[str, Path]) -> None:
    models = {**MODELS, "clip_vision": []}
    report = preflight_panels(
        [panel(shot_id="s1", references=(images["ref"],))], object_info_all(), models
    )
    (problem,) = report.errors
    assert (problem.code, problem.node_id, problem.shot_id) == (
        "ipadapter_models_missing",
        "4",
        "s1",
    )
    files = GraphOptions(ipadapter_mode="files")
    report = preflight_panels(
        [panel(shot_id="s1", references=(images["ref"],))], object_info_all(), models, files
    )
    assert [(p.code, p.node_id) for p in report.errors] == [("model_missing", "5")]


def test_preprocessing_without_the_pack_falls_back_and_warns(images: dict[str, Path]) -> None:
    p = panel(shot_id="s1", controls=(ControlImage("pose", images["pose"], preprocess=True),))
    report = preflight_panels([p], catalog_core(), MODELS)
    assert report.ok
    assert [w.code for w in report.warnings] == ["graph_note"]
    assert "OpenposePreprocessor" in report.warnings[0].message
    # with the pack: it is used, and the first-use download is flagged
    report = preflight_panels([p], object_info_all(), MODELS)
    assert report.ok
    assert [w.code for w in report.warnings] == ["preprocessor_downloads"]
    # core Canny needs no pack and no weights
    canny = panel(shot_id="s2", controls=(ControlImage("canny", images["pose"], preprocess=True),))
    report = preflight_panels([canny], catalog_core(), MODELS)
    assert report.problems == ()
    assert any(n["class_type"] == "Canny" for n in report.graphs["s2"].graph.values())


def test_colliding_output_prefixes_are_refused(images: dict[str, Path]) -> None:
    panels = [panel(shot_id="a b"), panel(shot_id="a_b")]
    report = preflight_panels(panels, object_info_all(), MODELS)
    (problem,) = report.errors
    assert problem.code == "filename_prefix_collision" and problem.shot_id == "a_b"


def test_examples_render_through_the_preflight(images: dict[str, Path]) -> None:
    templates = {
        t.name: t
        for t in (
            load_template(EXAMPLES_DIR / "sdxl_character.binding.toml", object_info_all()),
            load_template(EXAMPLES_DIR / "sd15_pose.binding.json", object_info_all()),
        )
    }
    panels = [
        panel(shot_id="s1", template="sdxl-character", references=(images["ref"],)),
        panel(shot_id="s2", template="sd15-pose", controls=(ControlImage("pose", images["pose"]),)),
    ]
    report = preflight_panels(panels, object_info_all(), MODELS, GraphOptions(), templates)
    assert report.problems == ()
    assert report.graphs["s1"].template == "sdxl-character"


def test_problem_paragraph_names_shot_node_and_input() -> None:
    report = preflight_panels(
        [panel(shot_id="s9", steps=0)], object_info_all(), MODELS, check_files=False
    )
    (problem,) = report.errors
    assert problem.paragraph().startswith("shot s9, node 5 (KSampler) input steps: value 0")
