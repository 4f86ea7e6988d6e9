"""Property tests: valid panels give valid graphs that keep their parameters; template bindings
round-trip; every single broken input is reported on the right node."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storycore.panels import CONTROL_KINDS, ControlImage, LoraSpec, Panel
from storycore.workflows import (
    GraphOptions,
    apply_template,
    bound_values,
    build_panel_graph,
    template_from_data,
    validate_graph,
)

from ._support import MODELS, catalog_all, load_reference_json, panel

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KSAMPLER = load_reference_json("object_info.json")["KSampler"]["input"]["required"]
SAMPLERS = KSAMPLER["sampler_name"][0]
SCHEDULERS = KSAMPLER["scheduler"][0]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@st.composite
def panels(draw: st.DrawFn) -> Panel:
    loras = draw(
        st.lists(
            st.builds(
                LoraSpec,
                st.sampled_from(MODELS["loras"]),
                st.floats(-2, 2, allow_nan=False),
                st.floats(-2, 2, allow_nan=False),
            ),
            max_size=3,
        )
    )
    controls = draw(
        st.lists(
            st.builds(
                ControlImage,
                st.sampled_from(CONTROL_KINDS),
                st.sampled_from([Path("guides/a.png"), Path("guides/b.png")]),
                st.none() | st.floats(0, 2),
                st.none(),
                st.none(),
                st.booleans(),
            ),
            max_size=3,
        )
    )
    return panel(
        shot_id=draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)),
        version=draw(st.integers(1, 99)),
        positive=draw(text),
        negative=draw(text),
        width=draw(st.integers(8, 256)) * 8,
        height=draw(st.integers(8, 256)) * 8,
        seed=draw(st.integers(0, 2**31 - 1)),
        steps=draw(st.integers(1, 150)),
        cfg=draw(st.floats(0, 30, allow_nan=False)),
        sampler=draw(st.sampled_from(SAMPLERS)),
        scheduler=draw(st.sampled_from(SCHEDULERS)),
        checkpoint=draw(st.sampled_from(MODELS["checkpoints"])),
        denoise=draw(st.floats(0.05, 1.0)),
        vae=draw(st.none() | st.sampled_from(MODELS["vae"])),
        loras=tuple(loras),
        init_image=draw(st.none() | st.just(Path("frames/init.png"))),
        references=tuple(draw(st.lists(st.just(Path("refs/r.png")), max_size=3))),
        controls=tuple(controls),
    )


options_strategy = st.builds(
    GraphOptions,
    ipadapter_mode=st.sampled_from(["unified", "files"]),
    ipadapter_noise=st.sampled_from([0.0, 0.3]),
    controlnet_strength=st.floats(0, 2),
)


def _nodes(graph: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [
        n
        for _, n in sorted(graph.items(), key=lambda kv: int(kv[0]))
        if n["class_type"] == class_type
    ]


@SETTINGS
@given(panels(), options_strategy)
def test_valid_panel_gives_valid_graph_with_its_parameters(p: Panel, options: GraphOptions) -> None:
    built = build_panel_graph(p, options, node_classes=catalog_all())
    assert validate_graph(built.graph, catalog_all(), MODELS, shot_id=p.shot_id) == []
    graph = dict(built.graph)
    (sampler,) = _nodes(graph, "KSampler")
    inputs = sampler["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["cfg"]) == (p.seed, p.steps, p.cfg)
    assert (inputs["sampler_name"], inputs["scheduler"]) == (p.sampler, p.scheduler)
    expected_denoise = p.denoise if (p.init_image is None or p.denoise < 1) else 0.6
    assert inputs["denoise"] == expected_denoise
    texts = [n["inputs"]["text"] for n in _nodes(graph, "CLIPTextEncode")]
    assert texts == [p.positive, p.negative]
    sizes = [
        (n["inputs"]["width"], n["inputs"]["height"])
        for n in graph.values()
        if n["class_type"] in ("EmptyLatentImage", "ImageScale")
    ]
    assert sizes == [(p.width, p.height)]
    assert [n["inputs"]["lora_name"] for n in _nodes(graph, "LoraLoader")] == [
        lora.name for lora in p.loras
    ]
    assert len(_nodes(graph, "IPAdapterAdvanced")) == len(p.references)
    assert len(_nodes(graph, "ControlNetApplyAdvanced")) == len(p.controls)
    (save,) = _nodes(graph, "SaveImage")
    assert save["inputs"]["filename_prefix"] == f"storycore/lighthouse/{p.shot_id}/v{p.version}"
    assert len(built.uploads) == len(p.references) + len(p.controls) + (p.init_image is not None)


TEMPLATE_GRAPH = {
    "1": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd15.safetensors"},
        "_meta": {"title": "ckpt"},
    },
    "2": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "x", "clip": ["1", 1]},
        "_meta": {"title": "pos"},
    },
    "3": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "y", "clip": ["1", 1]},
        "_meta": {"title": "neg"},
    },
    "4": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
        "_meta": {"title": "latent"},
    },
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
        },
        "_meta": {"title": "sampler"},
    },
    "6": {
        "class_type": "VAEDecode",
        "inputs": {"samples": ["5", 0], "vae": ["1", 2]},
        "_meta": {"title": "decode"},
    },
    "7": {
        "class_type": "SaveImage",
        "inputs": {"images": ["6", 0], "filename_prefix": "t"},
        "_meta": {"title": "save"},
    },
}
ALL_BINDINGS = {
    "prompt": "pos.text",
    "negative": "3.text",
    "seed": "sampler.seed",
    "width": "latent.width",
    "height": {"node": "latent", "input": "height"},
    "steps": "5.steps",
    "cfg": "sampler.cfg",
    "denoise": "sampler.denoise",
    "filename_prefix": "save.filename_prefix",
    "checkpoint": "ckpt.ckpt_name",
    "sampler": "sampler.sampler_name",
    "scheduler": "sampler.scheduler",
}


@SETTINGS
@given(panels(), st.sets(st.sampled_from(sorted(ALL_BINDINGS)), min_size=1))
def test_template_bindings_round_trip(p: Panel, keys: set[str]) -> None:
    bindings = {k: ALL_BINDINGS[k] for k in keys}
    template = template_from_data("t", TEMPLATE_GRAPH, bindings, object_info=catalog_all())
    built = apply_template(template, p, GraphOptions())
    expected = {
        "prompt": p.positive,
        "negative": p.negative,
        "seed": p.seed,
        "width": p.width,
        "height": p.height,
        "steps": p.steps,
        "cfg": p.cfg,
        "denoise": p.denoise,
        "filename_prefix": built.filename_prefix,
        "checkpoint": p.checkpoint,
        "sampler": p.sampler,
        "scheduler": p.scheduler,
    }
    assert bound_values(template, built.graph) == {k: expected[k] for k in keys}
    # unbound inputs keep the template's values
    for node_id, node in TEMPLATE_GRAPH.items():
        for name, value in node["inputs"].items():
            bound = any(
                t.node_id == node_id and t.input == name for k in keys for t in template.values[k]
            )
            if not bound and name != "filename_prefix":
                assert built.graph[node_id]["inputs"][name] == value
    assert built.graph["7"]["inputs"]["filename_prefix"] == built.filename_prefix
    assert validate_graph(built.graph, catalog_all(), MODELS) == []


# -- every single broken input is reported on the right node ---------------------------------


def _links(graph: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (node_id, name)
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
        if isinstance(value, list)
    ]


def _widgets(graph: dict[str, Any], kinds: set[str]) -> list[tuple[str, str]]:
    found = []
    for node_id, node in graph.items():
        definition = catalog_all()[node["class_type"]]
        for name, value in node["inputs"].items():
            spec = definition.inputs.get(name)
            if spec is None or isinstance(value, list) or spec.type not in kinds:
                continue
            if spec.type == "COMBO" and spec.image_upload:
                continue
            if spec.type in ("INT", "FLOAT") and spec.max is None and spec.min is None:
                continue
            found.append((node_id, name))
    return sorted(found)


@SETTINGS
@given(
    panels(),
    st.sampled_from(["class", "enum", "number", "dangling", "cycle", "required"]),
    st.data(),
)
def test_every_single_broken_input_is_reported_on_its_node(
    p: Panel, fault: str, data: st.DataObject
) -> None:
    graph = copy.deepcopy(
        dict(build_panel_graph(p, GraphOptions(), node_classes=catalog_all()).graph)
    )
    if fault == "class":
        node_id = data.draw(st.sampled_from(sorted(graph)))
        graph[node_id]["class_type"] = "NoSuchNodeClass"
        codes = {"missing_node_class"}
    elif fault == "enum":
        node_id, name = data.draw(st.sampled_from(_widgets(graph, {"COMBO"})))
        graph[node_id]["inputs"][name] = "surely-not-a-choice"
        codes = {"value_not_in_list", "model_missing"}
    elif fault == "number":
        node_id, name = data.draw(st.sampled_from(_widgets(graph, {"INT", "FLOAT"})))
        spec = catalog_all()[graph[node_id]["class_type"]].inputs[name]
        if spec.max is not None:
            graph[node_id]["inputs"][name] = spec.max + 1
            codes = {"value_bigger_than_max"}
        else:
            graph[node_id]["inputs"][name] = spec.min - 1  # type: ignore[operator]
            codes = {"value_smaller_than_min"}
    elif fault == "dangling":
        node_id, name = data.draw(st.sampled_from(_links(graph)))
        graph[node_id]["inputs"][name] = ["999", 0]
        codes = {"link_to_missing_node"}
    elif fault == "required":
        node_id = data.draw(st.sampled_from(sorted(graph)))
        definition = catalog_all()[graph[node_id]["class_type"]]
        name = data.draw(st.sampled_from([s.name for s in definition.required_inputs()]))
        del graph[node_id]["inputs"][name]
        codes = {"required_input_missing"}
    else:
        # feed the sampler's output back into the positive prompt's clip input
        (sampler_id,) = [i for i, n in graph.items() if n["class_type"] == "KSampler"]
        node_id = next(i for i, n in graph.items() if n["_meta"]["title"] == "Positive prompt")
        graph[node_id]["inputs"]["clip"] = [sampler_id, 0]
        problems = validate_graph(graph, catalog_all(), MODELS, shot_id=p.shot_id)
        cycles = [q for q in problems if q.code == "cycle"]
        assert cycles and any(node_id in q.nodes and sampler_id in q.nodes for q in cycles)
        assert all(q.node_id in q.nodes for q in cycles)
        return
    problems = validate_graph(graph, catalog_all(), MODELS, shot_id=p.shot_id)
    hits = [q for q in problems if q.code in codes]
    assert hits, problems
    assert {q.node_id for q in hits} == {node_id}
    assert all(q.shot_id == p.shot_id for q in problems)
