"""Convert a workflow saved from the ComfyUI front end (UI format) to the API format (pure).

What the front end sends to ``/prompt`` when it queues a workflow (ComfyUI_frontend
src/utils/executionUtil.ts @ 01c735d9 ``graphToPrompt``), rebuilt from the saved file and the
server's ``/object_info``:

* every real node (not virtual, not muted, not bypassed) becomes ``{class_type, inputs,
  _meta: {title}}`` under its execution id; nodes inside subgraphs get ids such as ``"57:12"``
  and, nested, ``"57:30:5"`` (:mod:`storycore.workflows._subgraphs`);
* widget values come from ``widgets_values`` by the class's input order
  (:mod:`storycore.workflows._ui_widgets`); linked inputs are resolved through subgraph
  boundaries, reroutes, primitives, Get/Set pairs and bypassed nodes
  (:mod:`storycore.workflows._ui_resolve`);
* an input linked to a node that is not in the result is dropped, as the front end does.

Schema 0.4 (array links) and schema 1 (object links, ``state``) files both convert
(:mod:`storycore.workflows._ui_graph`). A subgraph instance that is muted or bypassed drops its
inner nodes, at any depth (ComfyUI_frontend pull request #8494, "Don't bypass subgraph contents
with subgraph": such an instance's contents stay out of the execution map; comfy-cli
comfy_cli/workflow_to_api.py @ e805d26b does the same); a bypassed instance passes a matching
input through like any bypassed node.
Anything that cannot be converted (an unknown node class, a legacy group node, a missing
subgraph definition, a loop) is a :class:`~storycore.errors.TemplateError` naming the node by
execution id, type and title.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storycore._text import node_sort_key
from storycore.errors import TemplateError
from storycore.workflows._node_packs import pack_for_class
from storycore.workflows._nodedefs import NodeCatalog
from storycore.workflows._subgraphs import (
    Definitions,
    Scope,
    child_scope,
    group_node_error,
    is_group_node_type,
    looks_like_subgraph_id,
    missing_definition_error,
)
from storycore.workflows._ui_graph import MAX_NODES, Graph, UiErrors, node_mode, slot_list
from storycore.workflows._ui_resolve import MODE_BYPASS, MODE_MUTED, Resolver, Value
from storycore.workflows._ui_widgets import widget_inputs, wrap_value

__all__ = ["VIRTUAL_NODE_TYPES", "is_api_format", "is_ui_format", "ui_to_api"]

# Node types that exist only in the front end (virtual nodes); never sent to the server.
VIRTUAL_NODE_TYPES = frozenset(
    {"Reroute", "PrimitiveNode", "Note", "MarkdownNote", "GetNode", "SetNode"}
)


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
        self.errors = UiErrors(source)
        self.defs = Definitions(data, self.errors)
        self.root = Scope(Graph(data, self.errors, "the workflow"))
        self.resolver = Resolver(self.defs, catalog, self.errors)
        self.real: list[tuple[Scope, str]] = []
        self.instances = 0

    def convert(self) -> dict[str, Any]:
        self._collect(self.root)
        missing: dict[str, list[str]] = {}
        for scope, node_id in self.real:
            kind = str(scope.graph.nodes[node_id].get("type"))
            if kind not in self.catalog:
                missing.setdefault(kind, []).append(scope.describe(node_id))
        if missing:
            names = sorted(missing)
            shown = "; ".join(f"{_with_pack(n)}: {', '.join(missing[n][:3])}" for n in names)
            raise self.errors.error(
                f"cannot convert: the server does not know the node classes {shown}",
                "install the missing node packs (then refresh /object_info) or export the "
                "workflow with 'Export (API)'",
            )
        graph: dict[str, Any] = {}
        for scope, node_id in self.real:
            graph[scope.exec_id(node_id)] = self._api_node(scope, node_id)
        for entry in graph.values():
            inputs = entry["inputs"]
            for name in [n for n, v in inputs.items() if _is_link(v) and v[0] not in graph]:
                del inputs[name]
        return {k: graph[k] for k in sorted(graph, key=_exec_sort_key)}

    def _collect(self, scope: Scope) -> None:
        """Every real node of ``scope`` and of the subgraph instances inside it."""
        for node_id, node in scope.graph.nodes.items():
            kind = node.get("type")
            if not isinstance(kind, str) or not kind:
                raise self.errors.error(f"{scope.describe(node_id)} has no type")
            mode = node_mode(node)
            if kind in self.defs:
                if mode not in (MODE_MUTED, MODE_BYPASS):
                    self.instances += 1
                    self._check_size(self.instances)
                    child = child_scope(scope, node_id, self.defs, self.catalog, self.errors)
                    self._collect(child)
                continue
            if is_group_node_type(kind):
                raise group_node_error(self.errors, scope, node_id)
            if kind in VIRTUAL_NODE_TYPES or mode in (MODE_MUTED, MODE_BYPASS):
                continue
            if looks_like_subgraph_id(kind) and kind not in self.catalog:
                raise missing_definition_error(self.errors, scope, node_id)
            self.real.append((scope, node_id))
            self._check_size(len(self.real))

    def _check_size(self, count: int) -> None:
        """Shared definitions nest: a few lines of JSON can stand for millions of nodes."""
        if count > MAX_NODES:
            raise self.errors.error(
                f"the workflow has more than {MAX_NODES} nodes or subgraph instances once its "
                "subgraphs are expanded",
                "split the workflow, or export it with 'Export (API)'",
            )

    def _api_node(self, scope: Scope, node_id: str) -> dict[str, Any]:
        node = scope.graph.nodes[node_id]
        definition = self.catalog[str(node["type"])]
        inputs = widget_inputs(node, definition)
        for entry in slot_list(node, "inputs"):
            if entry.get("link") is None:
                continue
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise self.errors.error(f"an input of {scope.describe(node_id)} has no name")
            found = self.resolver.input(scope, node_id, entry)
            if isinstance(found, Value):
                inputs[name] = wrap_value(found.value)
            elif isinstance(found, list):
                inputs[name] = found
            # nothing: a widget keeps its own value, a link-only input is left out
        title = node.get("title")
        if not isinstance(title, str) or not title:
            title = definition.display_name
        return {"class_type": definition.name, "inputs": inputs, "_meta": {"title": title}}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _exec_sort_key(exec_id: str) -> tuple[tuple[int, int, str, str], ...]:
    return tuple(node_sort_key(part) for part in exec_id.split(":"))


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
    try:
        return _Converter(data, NodeCatalog.coerce(catalog), source).convert()
    except RecursionError:
        raise TemplateError(
            "the workflow nests its links or subgraphs too deeply to convert",
            where=source,
            hint="simplify the workflow in ComfyUI, or export it with 'Export (API)'",
        ) from None
