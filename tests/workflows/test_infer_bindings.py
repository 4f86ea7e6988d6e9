"""Binding inference: the example templates against their hand-written binding files, workflows
from ComfyUI's bundled templates (tests/data/workflows/bundled/), and graphs written here for the
rules those do not reach (Flux with FluxGuidance and SamplerCustomAdvanced, titles, ambiguity)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storycore.errors import TemplateError
from storycore.workflows import load_template, template_from_data
from storycore.workflows._infer_bindings import infer_bindings
from storycore.workflows._infer_result import InferredBindings, binding_file_text
from storycore.workflows._ui_format import ui_to_api

from ._support import EXAMPLES_DIR, REPO_ROOT, catalog_all

BUNDLED = REPO_ROOT / "tests" / "data" / "workflows" / "bundled"


def _graph(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return ui_to_api(data, catalog_all(), str(path)) if "nodes" in data else data


def _infer(path: Path, **kwargs: Any) -> InferredBindings:
    return infer_bindings(_graph(path), catalog_all(), source=str(path), **kwargs)


def _targets(found: InferredBindings) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for item in found.bound:
        out.setdefault(item.value, set()).add((item.node_id, item.input))
    return out


def _not_bound(found: InferredBindings) -> dict[str, str]:
    return {item.value: item.kind for item in found.not_bound}


@pytest.mark.parametrize(
    ("binding_file", "extra"),
    [
        ("sd15_pose.binding.json", {"sampler", "scheduler"}),
        ("sdxl_character.binding.toml", {"sampler", "scheduler", "denoise"}),
    ],
)
def test_examples_match_their_hand_written_bindings(binding_file: str, extra: set[str]) -> None:
    written = load_template(EXAMPLES_DIR / binding_file, catalog_all())
    text = (EXAMPLES_DIR / binding_file).read_text()
    data = json.loads(text) if binding_file.endswith(".json") else tomllib.loads(text)
    workflow = EXAMPLES_DIR / data["workflow"]
    found = _infer(workflow)
    inferred = template_from_data(
        "x", json.loads(workflow.read_text()), found.bindings(), object_info=catalog_all()
    )
    for key, targets in written.values.items():
        if key == "filename_prefix":  # left to the engine: every SaveImage gets the shot prefix
            assert _not_bound(found)["filename_prefix"] == "kept"
            assert [written.graph[t.node_id]["class_type"] for t in targets] == ["SaveImage"]
            continue
        assert {(t.node_id, t.input) for t in inferred.values[key]} == {
            (t.node_id, t.input) for t in targets
        }, key
    assert set(inferred.values) - set(written.values) == extra
    assert [(t.node_id, t.input) for t in inferred.references] == [
        (t.node_id, t.input) for t in written.references
    ]
    assert {k: [(t.node_id, t.input) for t in v] for k, v in inferred.controls.items()} == {
        k: [(t.node_id, t.input) for t in v] for k, v in written.controls.items()
    }


def test_sd15_bundled_default() -> None:
    found = _infer(BUNDLED / "sd15_default.ui.json")
    assert _targets(found) == {
        "seed": {("3", "seed")},
        "steps": {("3", "steps")},
        "cfg": {("3", "cfg")},
        "sampler": {("3", "sampler_name")},
        "scheduler": {("3", "scheduler")},
        "denoise": {("3", "denoise")},
        "prompt": {("6", "text")},  # by position: both encoders are untitled
        "negative": {("7", "text")},
        "width": {("5", "width")},
        "height": {("5", "height")},
    }
    assert _not_bound(found)["checkpoint"] == "kept"
    assert found.sampler_id == "3" and found.output_ids == ("9",)
    # the two encoders share the display name, so the binding file names them by id
    assert found.bindings()["prompt"] == "6.text"


def test_flux_bundled_binds_guidance_and_reports_no_negative() -> None:
    found = _infer(BUNDLED / "flux_dev_full.ui.json")
    targets = _targets(found)
    assert targets["prompt"] == {("41", "clip_l"), ("41", "t5xxl")}
    assert targets["cfg"] == {("41", "guidance")}  # CLIPTextEncodeFlux carries the guidance
    assert targets["width"] == {("27", "width")}  # EmptySD3LatentImage
    kinds = _not_bound(found)
    assert kinds["negative"] == "none"
    reasons = {n.value: n.reason for n in found.not_bound}
    assert "ConditioningZeroOut" in reasons["negative"]
    assert "UNETLoader" in reasons["checkpoint"] and kinds["checkpoint"] == "kept"


def test_sdxl_refiner_bundled_chooses_the_base_sampler() -> None:
    found = _infer(BUNDLED / "sdxl_refiner.ui.json")
    targets = _targets(found)
    assert found.sampler_id == "10"
    assert targets["seed"] == {("10", "noise_seed")}
    assert targets["steps"] == {("10", "steps")}
    assert targets["prompt"] == {("6", "text"), ("15", "text")}  # base and refiner encoders
    assert targets["negative"] == {("7", "text"), ("16", "text")}
    assert any("chosen of 2" in note and "REFINER" in note for note in found.notes)
    assert _not_bound(found)["denoise"] == "absent"


def _flux_api(**titles: str) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                      "weight_dtype": "default"}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0],
              "lora_name": "ink.safetensors", "strength_model": 0.8}},
        "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
              "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a cat"}},
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0],
                                                       "guidance": 3.5}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["2", 0],
                                                      "conditioning": ["5", 0]}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple",
                                                         "steps": 20, "denoise": 1.0}},
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024,
                                                               "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["7", 0],
               "guider": ["6", 0], "sampler": ["8", 0], "sigmas": ["9", 0],
               "latent_image": ["10", 0]}},
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["12", 0]}},
        "14": {"class_type": "SaveImage", "inputs": {"images": ["13", 0],
                                                     "filename_prefix": "flux"}},
    }  # fmt: skip
    for node_id, title in titles.items():
        graph[node_id]["_meta"] = {"title": title}
    return graph


def test_flux_guidance_node_with_custom_sampler() -> None:
    found = infer_bindings(_flux_api(), catalog_all())
    targets = _targets(found)
    assert targets["seed"] == {("7", "noise_seed")}
    assert targets["sampler"] == {("8", "sampler_name")}
    assert targets["steps"] == {("9", "steps")} and targets["scheduler"] == {("9", "scheduler")}
    assert targets["cfg"] == {("5", "guidance")}
    assert targets["prompt"] == {("4", "text")}
    kinds = _not_bound(found)
    assert kinds["negative"] == "none"
    assert "BasicGuider" in {n.value: n.reason for n in found.not_bound}["negative"]
    assert kinds["lora"] == "kept" and kinds["checkpoint"] == "kept"
    lora = next(n.reason for n in found.not_bound if n.value == "lora")
    assert "'ink.safetensors' at strength 0.8" in lora
    # the inferred table loads as a template
    template_from_data("flux", _flux_api(), found.bindings(), object_info=catalog_all())


def _two_encoders(positive_title: str, negative_title: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a"},
              "_meta": {"title": positive_title}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "b"},
              "_meta": {"title": negative_title}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512,
                                                           "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0],
              "negative": ["3", 0], "latent_image": ["4", 0], "seed": 1, "steps": 20, "cfg": 7.0,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    }  # fmt: skip


def test_titles_win_over_positions() -> None:
    # wired the wrong way round: node 2 feeds positive but says "Negative"
    found = infer_bindings(_two_encoders("Negative", "Positive"), catalog_all())
    assert _targets(found)["prompt"] == {("3", "text")}
    assert _targets(found)["negative"] == {("2", "text")}
    assert found.bindings()["prompt"] == "Positive.text"
    untitled = infer_bindings(_two_encoders("A", "B"), catalog_all())
    assert _targets(untitled)["prompt"] == {("2", "text")}


def test_bind_checkpoint_on_request() -> None:
    found = infer_bindings(_two_encoders("p", "n"), catalog_all(), bind_checkpoint=True)
    assert _targets(found)["checkpoint"] == {("1", "ckpt_name")}


def test_two_independent_samplers_are_refused_unless_a_title_says_main() -> None:
    graph = _two_encoders("p", "n")
    graph["15"] = dict(graph["5"])
    graph["16"] = {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["1", 2]}}
    graph["17"] = {"class_type": "SaveImage", "inputs": {"images": ["16", 0]}}
    with pytest.raises(TemplateError) as caught:
        infer_bindings(graph, catalog_all(), source="two.json")
    text = str(caught.value)
    assert "two.json" in text and "2 samplers" in text and "node 5" in text and "node 15" in text
    graph["15"] = {**graph["15"], "_meta": {"title": "Main sampler"}}
    found = infer_bindings(graph, catalog_all())
    assert found.sampler_id == "15" and "its title says so" in found.notes[0]


def test_no_sampler_and_no_output_are_clear_errors() -> None:
    graph = _two_encoders("p", "n")
    no_output = {k: v for k, v in graph.items() if k != "7"}
    with pytest.raises(TemplateError, match="no output node"):
        infer_bindings(no_output, catalog_all(), source="w.json")
    no_sampler = {k: v for k, v in graph.items() if k not in ("5", "6")}
    with pytest.raises(TemplateError, match="no sampler node") as caught:
        infer_bindings(no_sampler, catalog_all(), source="w.json")
    assert caught.value.exit_code == 6


def test_img2img_binds_the_init_image_instead_of_the_size() -> None:
    graph = _two_encoders("p", "n")
    graph["4"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["1", 2]}}
    graph["8"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
    found = infer_bindings(graph, catalog_all())
    assert _targets(found)["init_image"] == {("8", "image")}
    assert _not_bound(found)["width"] == "none"


def test_binding_file_text_round_trips_and_comments_are_one_line(tmp_path: Path) -> None:
    graph = _two_encoders("Pos\nitive", "neg")
    found = infer_bindings(graph, catalog_all())
    (tmp_path / "w.api.json").write_text(json.dumps(graph))
    text = binding_file_text("t", "w.api.json", found)
    (tmp_path / "t.binding.toml").write_text(text)
    data = tomllib.loads(text)
    assert data["workflow"] == "w.api.json" and data["bindings"] == found.bindings()
    assert all(line.startswith("#") or "Not bound" not in line for line in text.splitlines())
    template = load_template(tmp_path / "t.binding.toml", catalog_all())
    assert template.values["prompt"][0].node_id == "2"


def test_flux_redux_bundled_guidance_node_custom_sampler_and_references() -> None:
    found = _infer(BUNDLED / "flux_redux.ui.json")
    targets = _targets(found)
    assert targets["seed"] == {("25", "noise_seed")}  # RandomNoise
    assert targets["steps"] == {("17", "steps")}  # BasicScheduler
    assert targets["sampler"] == {("16", "sampler_name")}  # KSamplerSelect
    assert targets["cfg"] == {("26", "guidance")}  # FluxGuidance, through two StyleModelApply
    assert targets["prompt"] == {("6", "text")}
    # the PrimitiveNode size fed the latent and ModelSamplingFlux: both get the panel's size
    assert targets["width"] == {("27", "width"), ("30", "width")}
    assert targets["references"] == {("40", "image"), ("47", "image")}  # via CLIPVisionEncode
    assert [b.node_id for b in found.bound if b.value == "references"] == ["40", "47"]
    assert _not_bound(found)["negative"] == "none"  # BasicGuider


def test_flux_bundled_with_a_subgraph() -> None:
    path = BUNDLED / "flux_dev_subgraph.ui.json"
    data = json.loads(path.read_text())
    try:
        graph = ui_to_api(data, catalog_all(), str(path))
    except TemplateError as err:
        if "subgraph" in str(err):
            pytest.skip("the UI converter does not expand subgraphs yet")
        raise
    found = infer_bindings(graph, catalog_all())
    by_value = {b.value: b for b in found.bound}
    assert "cfg" not in by_value  # zeroed negative and no guidance input: the cfg of 1 stays
    assert _not_bound(found)["cfg"] == "kept"
    assert by_value["prompt"].class_type == "CLIPTextEncode"
    assert "gorgeous-haired artist" in graph[by_value["prompt"].node_id]["inputs"]["text"]
    assert by_value["seed"].class_type == "KSampler"
    assert by_value["width"].class_type == "EmptySD3LatentImage"
    assert _not_bound(found)["negative"] == "none"
    template_from_data("flux", data, found.bindings(), object_info=catalog_all())


_CLASSES = [
    "KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced", "CLIPTextEncode", "FluxGuidance",
    "ConditioningZeroOut", "ConditioningCombine", "ControlNetApplyAdvanced", "EmptyLatentImage",
    "VAEEncode", "LoadImage", "SaveImage", "PreviewImage", "LoraLoader", "UNETLoader",
    "CheckpointLoaderSimple", "BasicGuider", "CFGGuider", "RandomNoise", "NoSuchNode",
]  # fmt: skip
_INPUTS = [
    "positive", "negative", "conditioning", "latent_image", "model", "pixels", "image",
    "guider", "noise", "sigmas", "seed", "text", "width", "conditioning_1",
]  # fmt: skip
_value = st.one_of(
    st.tuples(st.sampled_from([str(i) for i in range(8)]), st.integers(-1, 3)).map(list),
    st.integers(), st.text(max_size=5), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=3),
)  # fmt: skip
_node = st.fixed_dictionaries(
    {
        "class_type": st.sampled_from(_CLASSES),
        "inputs": st.dictionaries(st.sampled_from(_INPUTS), _value, max_size=6),
    },
    optional={"_meta": st.one_of(st.just({"title": "Negative"}), st.text(max_size=3), st.none())},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([str(i) for i in range(8)]), _node, min_size=1))
def test_any_graph_is_bound_or_refused_in_words(graph: dict[str, Any]) -> None:
    try:
        found = infer_bindings(graph, catalog_all(), source="fuzz.json")
    except TemplateError as err:
        assert "fuzz.json" in str(err)
        return
    assert found.sampler_id in graph
    binding_file_text("t", "w.json", found)  # always writable


def _with_control(model: str, title: str | None = None, pre: str | None = None) -> dict[str, Any]:
    graph = _two_encoders("p", "n")
    graph["20"] = {"class_type": "LoadImage", "inputs": {"image": "guide.png"}}
    if title:
        graph["20"]["_meta"] = {"title": title}
    image: list[Any] = ["20", 0]
    if pre:
        graph["21"] = {"class_type": pre, "inputs": {"image": ["20", 0]}}
        image = ["21", 0]
    graph["22"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": model}}
    graph["23"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["2", 0], "negative": ["3", 0], "control_net": ["22", 0],
                   "image": image, "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0},
    }  # fmt: skip
    graph["5"]["inputs"].update(positive=["23", 0], negative=["23", 1])
    return graph


@pytest.mark.parametrize(
    ("model", "title", "pre", "role"),
    [
        ("control_v11p_sd15_openpose.pth", None, None, "controls.pose"),  # the model's file
        ("cn.safetensors", None, "DepthAnythingPreprocessor", "controls.depth"),  # preprocessor
        ("control_v11p_sd15_canny.pth", "Lineart guide", None, "controls.lineart"),  # title wins
        ("cn.safetensors", None, None, None),  # nothing says which kind
    ],
)
def test_control_images(model: str, title: str | None, pre: str | None, role: str | None) -> None:
    found = infer_bindings(_with_control(model, title, pre), catalog_all())
    targets = _targets(found)
    # the prompts are still found through ControlNetApplyAdvanced's positive / negative outputs
    assert targets["prompt"] == {("2", "text")} and targets["negative"] == {("3", "text")}
    if role is None:
        assert _not_bound(found)["images"] == "unknown"
        assert "which kind" in {n.value: n.reason for n in found.not_bound}["images"]
    else:
        assert targets[role] == {("20", "image")}


def test_an_unrecognised_image_and_two_save_nodes_are_reported() -> None:
    graph = _two_encoders("p", "n")
    graph["30"] = {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
    graph["31"] = {"class_type": "SaveImage", "inputs": {"images": ["30", 0]}}
    graph["32"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0]}}
    found = infer_bindings(graph, catalog_all())
    assert _not_bound(found)["images"] == "unknown"
    assert any("2 SaveImage nodes (7, 32)" in note for note in found.notes)
