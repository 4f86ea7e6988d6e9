"""Walking an API-format graph for binding inference (pure): who feeds what, by link.

Node classes and their inputs are those of ComfyUI's core nodes: ``nodes.py`` (KSampler,
KSamplerAdvanced, CLIPTextEncode, EmptyLatentImage, CheckpointLoaderSimple, LoraLoader,
ControlNetApplyAdvanced, VAEEncode, LoadImage, SaveImage, ConditioningCombine...),
``comfy_extras/nodes_custom_sampler.py`` (SamplerCustom, SamplerCustomAdvanced, RandomNoise,
CFGGuider, BasicGuider, KSamplerSelect, BasicScheduler), ``comfy_extras/nodes_flux.py``
(FluxGuidance, CLIPTextEncodeFlux), ``comfy_extras/nodes_sd3.py`` (EmptySD3LatentImage,
CLIPTextEncodeSD3), ``comfy_extras/nodes_clip_sdxl.py`` (CLIPTextEncodeSDXL) and
``comfy_extras/nodes_primitive.py`` (PrimitiveInt, PrimitiveStringMultiline...): ComfyUI
``nodes.py`` @ 5aabaf51, ``comfy_extras/nodes_custom_sampler.py`` @ be91880b, and the recorded
``/object_info`` of ComfyUI 0.3.64. A class these tables do not know is judged by the input and
output types the catalog gives it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from storycore._text import node_sort_key
from storycore.workflows._graph import is_link
from storycore.workflows._nodedefs import NodeCatalog

__all__ = ["TEXT_INPUTS", "GraphView"]

# Text encoders: the inputs that take the prompt text.
TEXT_INPUTS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodeLumina2": ("user_prompt",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
}
# Widget types whose value a single-value node (a primitive) hands on.
_VALUE_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_MAX_WALK = 500_000  # nodes one walk visits; a graph is bounded by its file size anyway


class GraphView:
    """An API-format graph with its links indexed both ways and the catalog's types at hand."""

    def __init__(self, graph: Mapping[str, Any], catalog: NodeCatalog | None) -> None:
        self.graph = graph
        self.catalog = catalog
        self.consumers: dict[str, list[tuple[str, str, int]]] = {}
        for node_id in self.ids():
            for name, value in self.inputs(node_id).items():
                source = self._link(value)
                if source is not None:
                    self.consumers.setdefault(source[0], []).append((node_id, name, source[1]))

    # --- facts about one node ---------------------------------------------------------------

    def ids(self) -> list[str]:
        return sorted(self.graph, key=node_sort_key)

    def class_of(self, node_id: str) -> str:
        return str(self.graph[node_id].get("class_type"))

    def inputs(self, node_id: str) -> Mapping[str, Any]:
        found = self.graph[node_id].get("inputs")
        return found if isinstance(found, Mapping) else {}

    def title(self, node_id: str) -> str | None:
        meta = self.graph[node_id].get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        return title if isinstance(title, str) and title else None

    def words(self, node_id: str) -> str:
        """The node's title in lower case ('' without one), for title hints."""
        return (self.title(node_id) or "").lower()

    def has_input(self, node_id: str, name: str) -> bool:
        if name in self.inputs(node_id):
            return True
        definition = self._definition(node_id)
        return definition is not None and name in definition.inputs

    def input_type(self, node_id: str, name: str) -> str | None:
        definition = self._definition(node_id)
        spec = definition.inputs.get(name) if definition is not None else None
        return spec.type if spec is not None else None

    def output_name(self, node_id: str, slot: int) -> str | None:
        definition = self._definition(node_id)
        if definition is None:
            return None
        names = definition.output_names or definition.outputs
        return names[slot] if 0 <= slot < len(names) else None

    def outputs(self, node_id: str) -> tuple[str, ...]:
        definition = self._definition(node_id)
        return definition.outputs if definition is not None else ()

    def is_output_node(self, node_id: str) -> bool:
        definition = self._definition(node_id)
        if definition is not None:
            return bool(definition.output_node)
        return self.class_of(node_id) in ("SaveImage", "PreviewImage", "SaveImageWebsocket")

    def widget_inputs(self, node_id: str, types: frozenset[str] = _VALUE_TYPES) -> list[str]:
        """The inputs of the node that take a value of one of ``types`` (catalog order)."""
        definition = self._definition(node_id)
        if definition is None:
            return [n for n, v in self.inputs(node_id).items() if not is_link(v)]
        return [
            name
            for name in definition.input_order
            if definition.inputs[name].type in types and definition.inputs[name].is_widget
        ]

    def _definition(self, node_id: str) -> Any:
        class_type = self.class_of(node_id)
        if self.catalog is None or class_type not in self.catalog:
            return None
        return self.catalog[class_type]

    # --- links ------------------------------------------------------------------------------

    def _link(self, value: Any) -> tuple[str, int] | None:
        if not is_link(value):
            return None
        node, slot = str(value[0]), value[1]
        if node not in self.graph or not isinstance(slot, int) or isinstance(slot, bool):
            return None
        return node, slot

    def source(self, node_id: str, name: str) -> tuple[str, int] | None:
        """The node and output slot feeding input ``name``, or ``None`` (a value, or nothing)."""
        return self._link(self.inputs(node_id).get(name))

    def link_inputs(self, node_id: str) -> list[str]:
        return [n for n, v in self.inputs(node_id).items() if self._link(v) is not None]

    def upstream(self, node_id: str) -> set[str]:
        """Every node this one depends on (not itself)."""
        seen: set[str] = set()
        todo = [node_id]
        while todo and len(seen) < _MAX_WALK:
            current = todo.pop()
            for name in self.link_inputs(current):
                found = self.source(current, name)
                if found is not None and found[0] not in seen:
                    seen.add(found[0])
                    todo.append(found[0])
        seen.discard(node_id)
        return seen

    def downstream(self, node_id: str) -> set[str]:
        """Every node that depends on this one (not itself)."""
        seen: set[str] = set()
        todo = [node_id]
        while todo and len(seen) < _MAX_WALK:
            current = todo.pop()
            for consumer, _, _ in self.consumers.get(current, ()):
                if consumer not in seen:
                    seen.add(consumer)
                    todo.append(consumer)
        seen.discard(node_id)
        return seen

    def follow_typed(self, node_id: str, name: str, kind: str) -> Iterator[str]:
        """Walk up from input ``name`` through nodes that pass ``kind`` (``MODEL``, ``LATENT``,
        ``IMAGE``) on: each node reached, nearest first, along the first input of that type."""
        found = self.source(node_id, name)
        seen: set[str] = set()
        while found is not None and found[0] not in seen and len(seen) < _MAX_WALK:
            current = found[0]
            seen.add(current)
            yield current
            following = [
                n
                for n in self.link_inputs(current)
                if self.input_type(current, n) == kind or n.lower() == kind.lower()
            ]
            found = self.source(current, following[0]) if following else None

    def single_value_input(self, node_id: str) -> str | None:
        """For a node that only holds one value (PrimitiveInt, PrimitiveStringMultiline, a
        custom 'Int' or 'String' node): the input holding it."""
        widgets = self.widget_inputs(node_id)
        if len(widgets) == 1 and not self.link_inputs(node_id) and len(self.outputs(node_id)) <= 1:
            return widgets[0]
        return None

    def label(self, node_id: str) -> str:
        """``node 6 (CLIPTextEncode, 'Positive')`` for messages."""
        title = self.title(node_id)
        shown = f", {title!r}" if title and title != self.class_of(node_id) else ""
        return f"node {node_id} ({self.class_of(node_id)}{shown})"
