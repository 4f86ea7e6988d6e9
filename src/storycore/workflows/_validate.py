"""Validate one API-format graph against a server's node definitions (pure).

Mirrors what ComfyUI checks on ``POST /prompt`` (value conversion, min/max, combo lists, link shape
and types) and adds what it does not: every missing class at once with the pack that provides it,
model files with the closest installed names, cycles, and the IP-Adapter unified loader's model
files (which the server only finds missing at run time).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from storycore._text import node_sort_key
from storycore.workflows._graph import UPLOAD_PLACEHOLDER_PREFIX
from storycore.workflows._node_packs import pack_for_class
from storycore.workflows._nodedefs import InputSpec, NodeCatalog, NodeDef, model_folder_for
from storycore.workflows._problems import Problem

__all__ = ["check_ipadapter_models", "find_cycles", "types_match", "validate_graph"]

Models = Mapping[str, Sequence[str]]


def types_match(received: str, expected: str) -> bool:
    """ComfyUI's link type rule: equal, a ``*`` wildcard, or overlapping ``A,B`` unions."""
    if received == expected or "*" in (received, expected):
        return True
    if expected == "COMBO":
        return received == "COMBO"
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def _close(value: Any, choices: Sequence[Any]) -> list[str]:
    names = [str(c) for c in choices]
    return difflib.get_close_matches(str(value), names, n=3, cutoff=0.3)


class _GraphChecker:
    def __init__(
        self, graph: Mapping[str, Any], catalog: NodeCatalog, models: Models, shot_id: str | None
    ) -> None:
        self.graph = graph
        self.catalog = catalog
        self.models = models
        self.shot_id = shot_id
        self.problems: list[Problem] = []

    def add(self, code: str, message: str, **kw: Any) -> None:
        self.problems.append(Problem(code=code, message=message, shot_id=self.shot_id, **kw))

    def run(self) -> list[Problem]:
        if not isinstance(self.graph, Mapping) or not self.graph:
            self.add("prompt_no_outputs", "the graph is empty", hint="the builder produced nothing")
            return self.problems
        outputs = [
            node_id
            for node_id, node in self.graph.items()
            if _class_of(node) in self.catalog and self.catalog[str(_class_of(node))].output_node
        ]
        used = _upstream(self.graph, outputs)
        for node_id in sorted(self.graph, key=_id_key):
            node_id = str(node_id)
            if node_id in used or not outputs:
                self.check_node(node_id, self.graph[node_id])
            elif self.check_class(node_id, self.graph[node_id]) is not None:
                self.add(
                    "unused_node",
                    "the node feeds no output node; the server skips it",
                    node_id=node_id,
                    class_type=_class_of(self.graph[node_id]),
                    hint="connect it or remove it",
                    severity="warning",
                )
        known = all(_class_of(n) in self.catalog for n in self.graph.values())
        if not outputs and known:
            self.add(
                "prompt_no_outputs",
                "the graph has no output node (such as SaveImage), so the server would run nothing",
                hint="add a SaveImage node",
            )
        for cycle in find_cycles(self.graph):
            self.add(
                "cycle",
                "nodes feed each other in a loop: " + " -> ".join([*cycle, cycle[0]]),
                node_id=cycle[0],
                class_type=_class_of(self.graph.get(cycle[0])),
                nodes=tuple(cycle),
                hint="break the loop; a ComfyUI graph must be acyclic",
            )
        return self.problems

    def check_class(self, node_id: str, node: Any) -> NodeDef | None:
        """The node's definition, or None after reporting a missing or unknown class."""
        class_type = _class_of(node)
        if class_type is None:
            self.add(
                "missing_class_type",
                "the node has no class_type",
                node_id=node_id,
                hint="every node needs a class_type",
            )
            return None
        if class_type not in self.catalog:
            self.missing_class(node_id, class_type)
            return None
        return self.catalog[class_type]

    def check_node(self, node_id: str, node: Any) -> NodeDef | None:
        definition = self.check_class(node_id, node)
        if definition is None:
            return None
        class_type = definition.name
        inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
        for spec in definition.inputs.values():
            if spec.section == "hidden":
                continue
            if spec.name not in inputs:
                if spec.required:
                    self.add(
                        "required_input_missing",
                        f"required input {spec.name!r} is missing",
                        node_id=node_id,
                        class_type=class_type,
                        input_name=spec.name,
                        hint=f"give {spec.name} a value or a link",
                    )
                continue
            value = inputs[spec.name]
            if isinstance(value, list) and not (spec.multiselect and spec.type == "COMBO"):
                self.check_link(node_id, class_type, spec, value)
            else:
                self.check_value(node_id, class_type, spec, value)
        return definition

    def missing_class(self, node_id: str, class_type: str) -> None:
        pack = pack_for_class(class_type)
        if pack is not None:
            hint = f"install the custom node pack {pack[0]} ({pack[1]}) and restart ComfyUI"
        else:
            near = difflib.get_close_matches(class_type, list(self.catalog), n=1, cutoff=0.8)
            hint = (
                f"did you mean {near[0]!r}? (class names are case-sensitive)"
                if near
                else "install the custom node pack that provides it (ComfyUI-Manager can search "
                "by class name)"
            )
        self.add(
            "missing_node_class",
            f"the server has no node class {class_type!r}",
            node_id=node_id,
            class_type=class_type,
            hint=hint,
        )

    def check_link(self, node_id: str, class_type: str, spec: InputSpec, value: list[Any]) -> None:
        kw: dict[str, Any] = {"node_id": node_id, "class_type": class_type, "input_name": spec.name}
        if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool):
            self.add(
                "bad_linked_input",
                f"{value!r} is not a link [node_id, output_slot]",
                hint="a link is a two-item list: the source node id (text) and an output index",
                **kw,
            )
            return
        source_id, slot = value
        if not isinstance(source_id, str) or source_id not in self.graph:
            self.add(
                "link_to_missing_node",
                f"the input is linked to node {source_id!r}, which is not in the graph",
                hint="node ids in links are texts that must name a node of the graph",
                **kw,
            )
            return
        source_class = _class_of(self.graph[source_id])
        if source_class is None or source_class not in self.catalog:
            return  # reported on the source node itself
        source = self.catalog[source_class]
        if not 0 <= slot < len(source.outputs):
            self.add(
                "invalid_output_slot",
                f"node {source_id} ({source_class}) has {len(source.outputs)} output(s); "
                f"slot {slot} does not exist",
                hint=f"use a slot in 0..{len(source.outputs) - 1}"
                if source.outputs
                else "link from a node that has outputs",
                **kw,
            )
            return
        received = source.outputs[slot]
        if not types_match(received, spec.type):
            self.add(
                "return_type_mismatch",
                f"node {source_id} output {slot} gives {received}, the input takes {spec.type}",
                hint=f"link an output of type {spec.type}",
                **kw,
            )

    def check_value(self, node_id: str, class_type: str, spec: InputSpec, value: Any) -> None:
        kw: dict[str, Any] = {"node_id": node_id, "class_type": class_type, "input_name": spec.name}
        if spec.type in ("INT", "FLOAT"):
            number = _to_number(value, spec.type)
            if number is None:
                self.add(
                    "invalid_input_type",
                    f"{value!r} is not a valid {spec.type} value",
                    hint="give a number",
                    **kw,
                )
                return
            if spec.min is not None and number < spec.min:
                self.add(
                    "value_smaller_than_min",
                    f"value {value} is smaller than the minimum {spec.min}",
                    hint=f"use a value in {spec.min}..{spec.max}",
                    **kw,
                )
            elif spec.max is not None and number > spec.max:
                self.add(
                    "value_bigger_than_max",
                    f"value {value} is bigger than the maximum {spec.max}",
                    hint=f"use a value in {spec.min}..{spec.max}",
                    **kw,
                )
        elif spec.type == "COMBO":
            self.check_combo(spec, value, class_type, kw)

    def check_combo(self, spec: InputSpec, value: Any, class_type: str, kw: dict[str, Any]) -> None:
        folder = model_folder_for(class_type, spec.name)
        if folder is not None and folder in self.models:
            choices: Sequence[Any] = tuple(self.models[folder])
        else:
            choices = spec.choices or ()
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item in choices:
                continue
            if spec.image_upload:
                if not (isinstance(item, str) and item.startswith(UPLOAD_PLACEHOLDER_PREFIX)):
                    self.add(
                        "image_not_on_server",
                        f"image {item!r} is not in the server's input folder list",
                        hint="bind it to a project image, or upload it to ComfyUI's input folder",
                        severity="warning",
                        **kw,
                    )
                continue
            near = _close(item, choices)
            if folder is not None:
                hint = (
                    f"closest installed: {', '.join(near)}"
                    if near
                    else f"install it into models/{folder}"
                    + (" (the folder is empty)" if not choices else "")
                )
                self.add(
                    "model_missing",
                    f"model file {item!r} is not installed in models/{folder}",
                    hint=hint,
                    **kw,
                )
            else:
                shown = ", ".join(repr(c) for c in list(choices)[:12])
                self.add(
                    "value_not_in_list",
                    f"value {item!r} is not one of the choices",
                    hint=f"did you mean {near[0]!r}?" if near else f"choices: {shown}",
                    **kw,
                )


def _to_number(value: Any, kind: str) -> float | None:
    """Convert like ComfyUI (``int(v)`` / ``float(v)``); None when the server would refuse it."""
    try:
        number = int(value) if kind == "INT" else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(number, float) and math.isnan(number):
        return None
    return number


def _class_of(node: Any) -> str | None:
    if not isinstance(node, Mapping):
        return None
    class_type = node.get("class_type")
    return class_type if isinstance(class_type, str) and class_type else None


def _id_key(node_id: Any) -> tuple[int, int, str, str]:
    return node_sort_key(str(node_id))


def _upstream(graph: Mapping[str, Any], roots: Sequence[str]) -> set[str]:
    """The nodes ``roots`` depend on through links, ``roots`` included."""
    seen: set[str] = set()
    stack = [str(r) for r in roots]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.get(node_id)
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for value in inputs.values():
            source = value[0] if isinstance(value, list) and len(value) == 2 else None
            if isinstance(source, str) and source in graph and source not in seen:
                stack.append(source)
    return seen


def find_cycles(graph: Mapping[str, Any]) -> list[list[str]]:
    """Each loop of links (as a list of node ids), found by depth-first search; one per loop."""
    edges: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        sources: list[str] = []
        for value in (inputs or {}).values() if isinstance(inputs, Mapping) else ():
            link_source = value[0] if isinstance(value, list) and len(value) == 2 else None
            if isinstance(link_source, str) and link_source in graph:
                sources.append(link_source)
        edges[str(node_id)] = sorted(set(sources), key=_id_key)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for root in sorted(edges, key=_id_key):
        if state.get(root):
            continue
        path: list[str] = [root]
        iters = [iter(edges[root])]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if state.get(nxt) == 1:
                loop = path[path.index(nxt) :]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    start = min(range(len(loop)), key=lambda i: _id_key(loop[i]))
                    cycles.append(loop[start:] + loop[:start])
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(edges[nxt]))
    return cycles


def validate_graph(
    graph: Mapping[str, Any],
    object_info: NodeCatalog | Mapping[str, Any],
    models: Models | None = None,
    *,
    shot_id: str | None = None,
) -> list[Problem]:
    """Every problem of one graph. ``models`` maps a model folder to its files and overrides the
    combo lists recorded in ``object_info`` for model inputs (ckpt_name, lora_name, ...)."""
    catalog = NodeCatalog.coerce(object_info)
    problems = _GraphChecker(graph, catalog, models or {}, shot_id).run()
    problems.extend(check_ipadapter_models(graph, models or {}, shot_id=shot_id))
    return problems


# -- IP-Adapter unified loader: the server validates it without looking at the model folders --

_PRESET_FILES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "light": (("ip-adapter_sd15_light_v11", "ip-adapter_sd15_light"), "vit-h"),
    "standard": (("ip-adapter_sd15", "ip-adapter_sdxl_vit-h"), "vit-h"),
    "vit-g": (("ip-adapter_sd15_vit-G", "ip-adapter_sdxl"), "vit-g"),
    "plus (": (("ip-adapter-plus_sd15", "ip-adapter-plus_sdxl_vit-h"), "vit-h"),
    "plus face": (("ip-adapter-plus-face_sd15", "ip-adapter-plus-face_sdxl_vit-h"), "vit-h"),
    "full face": (("ip-adapter-full-face_sd15",), "vit-h"),
}
_CLIP_VISION_FILES: Mapping[str, tuple[str, ...]] = {
    "vit-h": ("CLIP-ViT-H-14-laion2B-s32B-b79K",),
    "vit-g": ("CLIP-ViT-bigG-14-laion2B-39B-b160k",),
}


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"\.(safetensors|bin|pth|pt|ckpt)$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "", base.lower())


def _has_any(installed: Collection[str], expected: Sequence[str]) -> bool:
    stems = {_stem(n) for n in installed}
    return any(_stem(e) in stems for e in expected)


def check_ipadapter_models(
    graph: Mapping[str, Any], models: Models, *, shot_id: str | None = None
) -> list[Problem]:
    """Problems for each IPAdapterUnifiedLoader whose preset files are not in the model folders."""
    problems: list[Problem] = []
    for node_id in sorted(graph, key=_id_key):
        node = graph[node_id]
        if _class_of(node) != "IPAdapterUnifiedLoader":
            continue
        preset = str((node.get("inputs") or {}).get("preset", "")).lower()
        entry = next((v for k, v in _PRESET_FILES.items() if preset.startswith(k)), None)
        if entry is None:
            continue
        files, vision = entry
        kw: dict[str, Any] = {"shot_id": shot_id, "node_id": str(node_id)}
        kw["class_type"] = "IPAdapterUnifiedLoader"
        for folder, expected in (("ipadapter", files), ("clip_vision", _CLIP_VISION_FILES[vision])):
            if folder not in models:
                problems.append(
                    Problem(
                        "ipadapter_models_unchecked",
                        f"cannot check models/{folder}: its file list was not given",
                        hint=f"the preset needs one of {', '.join(expected)}",
                        severity="warning",
                        **kw,
                    )
                )
            elif not _has_any(models[folder], expected):
                problems.append(
                    Problem(
                        "ipadapter_models_missing",
                        f"the IP-Adapter preset needs one of {', '.join(expected)} in "
                        f"models/{folder}; the server would accept the graph and fail at run time",
                        hint=f"download it into ComfyUI/models/{folder}"
                        + (f" (installed: {', '.join(models[folder])})" if models[folder] else ""),
                        input_name="preset",
                        **kw,
                    )
                )
    return problems
