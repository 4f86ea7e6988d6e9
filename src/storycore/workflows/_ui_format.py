"""Convert a workflow saved from the ComfyUI front end (UI format) to the API format (pure).

The UI format lists ``nodes`` (each with ``type``, ``inputs`` with ``link`` ids, ``outputs``,
``widgets_values``, ``mode``, ``title``) and ``links`` (``[id, from_node, from_slot, to_node,
to_slot, type]``). Widget values are positional, so the conversion needs each class's input order
from ``/object_info``. Virtual nodes are resolved: ``Reroute`` passes its input through,
``PrimitiveNode`` gives its value to the inputs it feeds, a bypassed node (mode 4) passes the first
input of the same type through, a muted node (mode 2) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storycore._text import node_sort_key
from storycore.errors import TemplateError
from storycore.workflows._node_packs import pack_for_class
from storycore.workflows._nodedefs import InputSpec, NodeCatalog, NodeDef

__all__ = ["is_api_format", "is_ui_format", "ui_to_api"]

_VIRTUAL = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
_MODE_MUTED = 2
_MODE_BYPASS = 4
_SEED_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_MAX_HOPS = 64


def is_ui_format(data: Any) -> bool:
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_format(data: Any) -> bool:
    return (
        isinstance(data, Mapping)
        and bool(data)
        and all(isinstance(v, Mapping) and "class_type" in v for v in data.values())
    )


class _Converter:
    def __init__(self, data: Mapping[str, Any], catalog: NodeCatalog, source: str) -> None:
        self.catalog = catalog
        self.source = source
        self.nodes: dict[str, Mapping[str, Any]] = {}
        for node in data.get("nodes") or []:
            if not isinstance(node, Mapping) or "id" not in node:
                raise self.error("a node entry has no id", "check that the file is a UI workflow")
            self.nodes[str(node["id"])] = node
        definitions = data.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
        self.subgraph_ids = {
            str(s.get("id")) for s in subgraphs or [] if isinstance(s, Mapping) and s.get("id")
        }
        self.links: dict[int, tuple[str, int]] = {}
        for link in data.get("links") or []:
            if isinstance(link, list) and len(link) >= 5:
                origin, slot = str(link[1]), self.number(link[2], "the origin slot of a link")
                self.links[self.number(link[0], "a link id")] = (origin, slot)
            elif isinstance(link, Mapping) and "id" in link:
                origin = str(link.get("origin_id"))
                slot = self.number(link.get("origin_slot"), "the origin slot of a link")
                self.links[self.number(link["id"], "a link id")] = (origin, slot)

    def error(self, message: str, hint: str) -> TemplateError:
        return TemplateError(message, where=self.source, hint=hint)

    def number(self, value: Any, what: str) -> int:
        """A link id or slot: a whole number (written as one, or as a short string of ASCII
        digits); anything else (``"²"``, 5000 digits, ``1e400``) is a clear error."""
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 63:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise self.error(
            f"{what} in the UI workflow is {shown}, not a whole number",
            "re-save the workflow in ComfyUI",
        )

    def convert(self) -> dict[str, Any]:
        if any(
            isinstance(n.get("type"), str) and ("/" in n["type"] or n["type"] in self.subgraph_ids)
            for n in self.nodes.values()
        ):
            raise self.error(
                "the workflow uses group nodes or subgraphs, which cannot be converted",
                "ungroup them in ComfyUI, or export the workflow with 'Export (API)'",
            )
        real = {
            node_id: node
            for node_id, node in self.nodes.items()
            if node.get("type") not in _VIRTUAL and node.get("mode", 0) not in (2, 4)
        }
        missing = sorted({str(n.get("type")) for n in real.values()} - set(self.catalog))
        if missing:
            raise self.error(
                "cannot convert: the server does not know the node classes "
                + ", ".join(_with_pack(name) for name in missing),
                "install the missing node packs (then refresh /object_info) or export the "
                "workflow with 'Export (API)'",
            )
        graph: dict[str, Any] = {}
        for node_id in sorted(real, key=node_sort_key):
            node = real[node_id]
            definition = self.catalog[str(node["type"])]
            inputs = self.widget_inputs(node, definition)
            for slot in node.get("inputs") or []:
                if not isinstance(slot, Mapping) or slot.get("link") is None:
                    continue
                source = self.resolve(self.number(slot["link"], "a link id"), 0)
                if source is None:
                    inputs.pop(str(slot.get("name")), None)
                else:
                    inputs[str(slot["name"])] = source
            title = node.get("title") or definition.display_name
            graph[node_id] = {
                "class_type": definition.name,
                "inputs": inputs,
                "_meta": {"title": str(title)},
            }
        return graph

    def widget_inputs(self, node: Mapping[str, Any], definition: NodeDef) -> dict[str, Any]:
        values = node.get("widgets_values")
        widgets = [definition.inputs[n] for n in definition.input_order]
        widgets = [spec for spec in widgets if spec.is_widget]
        if isinstance(values, Mapping):
            return {spec.name: values[spec.name] for spec in widgets if spec.name in values}
        if not isinstance(values, list):
            return {}
        out: dict[str, Any] = {}
        position = 0
        for spec in widgets:
            if position >= len(values):
                break
            out[spec.name] = values[position]
            position += 1
            if position < len(values) and _has_companion_widget(spec, values[position]):
                position += 1
        return out

    def resolve(self, link_id: int, hops: int) -> Any:
        """The API value for a link: ``[node_id, slot]``, a literal (primitive) or None."""
        if hops > _MAX_HOPS:
            raise self.error("reroutes or bypassed nodes form a loop", "remove the loop")
        found = self.links.get(link_id)
        if found is None:
            raise self.error(f"link {link_id} is not in the links list", "re-save the workflow")
        origin_id, origin_slot = found
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise self.error(f"link {link_id} starts at missing node {origin_id}", "re-save it")
        kind, mode = origin.get("type"), origin.get("mode", 0)
        if kind == "PrimitiveNode":
            values = origin.get("widgets_values") or [None]
            return values[0] if isinstance(values, list) else None
        if kind == "Reroute" or mode == _MODE_BYPASS:
            return self.pass_through(origin, origin_slot, hops)
        if mode == _MODE_MUTED:
            return None
        return [origin_id, origin_slot]

    def pass_through(self, node: Mapping[str, Any], slot: int, hops: int) -> Any:
        outputs = node.get("outputs") or []
        wanted = outputs[slot].get("type") if slot < len(outputs) else None
        inputs = [i for i in node.get("inputs") or [] if isinstance(i, Mapping)]
        # like the front end: the input at the same index if its type fits, else the first fit
        ordered = ([inputs[slot]] if slot < len(inputs) else []) + inputs
        for candidate in ordered:
            if candidate.get("link") is None:
                continue
            if node.get("type") == "Reroute" or candidate.get("type") in (wanted, "*"):
                link = self.number(candidate["link"], "a link id")
                return self.resolve(link, hops + 1)
        return None


def _has_companion_widget(spec: InputSpec, next_value: Any) -> bool:
    """The front end stores an extra value after seed-like inputs and image upload combos."""
    if spec.control_after_generate or spec.name in ("seed", "noise_seed"):
        return isinstance(next_value, str) and next_value in _SEED_CONTROL_VALUES
    if spec.image_upload:
        return next_value in ("image", "upload", None)
    return False


def _with_pack(name: str) -> str:
    pack = pack_for_class(name)
    return f"{name} (from {pack[0]})" if pack else name


def ui_to_api(data: Mapping[str, Any], catalog: NodeCatalog, source: str) -> dict[str, Any]:
    """Convert a UI-format workflow to an API-format graph using the server's node definitions."""
    if not is_ui_format(data):
        raise TemplateError(
            "not a ComfyUI UI-format workflow (no 'nodes' and 'links')",
            where=source,
            hint="save the workflow from ComfyUI (Workflow > Save) or export it in API format",
        )
    return _Converter(data, catalog, source).convert()
