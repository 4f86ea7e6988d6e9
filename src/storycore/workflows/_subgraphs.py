"""Subgraphs of a UI-format workflow: definitions, instances and their scopes (pure).

A subgraph is a graph saved once under ``definitions.subgraphs`` (``id``, ``inputs``,
``outputs``, ``nodes``, ``links``) and used by *instance* nodes whose ``type`` is that id.
Inside a definition, links from the subgraph's input box start at node ``-10`` (``origin_slot``
= the index of the definition input) and links to its output box end at node ``-20``.

Flattened the way the front end queues a prompt (ComfyUI_frontend
src/lib/litegraph/src/subgraph/ExecutableNodeDTO.ts @ 01b3aeae and SubgraphNode.ts @ 024dff7f
``getInnerNodes``): a node inside instance 57 gets the execution id ``"57:12"``, one inside
instance 30 nested in instance 57 gets ``"57:30:5"``: the instance ids from the root, then the
node's own id, joined by ``:``.

Exposed inputs and promoted widgets (SubgraphNode.ts @ 024dff7f ``configure``,
``_rebindInputSubgraphSlots``, ``_applyPromotedWidgetValues``, ``serialize``): an instance's
inputs are the definition's inputs, matched to the saved instance inputs by name and type,
then by name. A definition input that feeds a widget of an inner node is *promoted*: the
instance shows it as a widget, and the instance's ``widgets_values`` holds one value per
promoted input, in definition order (older files add one value after a seed's
control_after_generate). A linked instance input wins over its widget value; with neither, the
inner node keeps its own widget value. ``properties.proxyWidgets`` entries that name an inner
node (not ``"-1"``) come from front ends that kept the value on the inner node itself, which is
where it is read from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from storycore.workflows._nodedefs import NodeCatalog
from storycore.workflows._ui_graph import Graph, UiErrors, describe_node, slot_list

__all__ = ["MAX_DEPTH", "Definitions", "Scope", "is_group_node_type"]

MAX_DEPTH = 32  # subgraphs inside subgraphs; the front end has no limit, 32 is far past use
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_group_node_type(kind: str) -> bool:
    """A legacy group node (``workflow>Name``, ``workflow/Name``), replaced by subgraphs."""
    return kind.startswith(("workflow>", "workflow/"))


def looks_like_subgraph_id(kind: str) -> bool:
    return bool(_UUID.match(kind))


class Definitions:
    """Every subgraph definition of a workflow, by id (nested ``definitions`` included)."""

    def __init__(self, data: Mapping[str, Any], errors: UiErrors) -> None:
        self.errors = errors
        self.raw: dict[str, Mapping[str, Any]] = {}
        self._graphs: dict[str, Graph] = {}
        self._collect(data, 0)

    def _collect(self, holder: Mapping[str, Any], depth: int) -> None:
        definitions = holder.get("definitions")
        if not isinstance(definitions, Mapping) or depth > MAX_DEPTH:
            return
        subgraphs = definitions.get("subgraphs")
        if not isinstance(subgraphs, list):
            return
        for entry in subgraphs:
            if not isinstance(entry, Mapping):
                continue
            sg_id = entry.get("id")
            if isinstance(sg_id, str) and sg_id and sg_id not in self.raw:
                self.raw[sg_id] = entry
                self._collect(entry, depth + 1)

    def __contains__(self, kind: object) -> bool:
        return isinstance(kind, str) and kind in self.raw

    def graph(self, sg_id: str) -> Graph:
        found = self._graphs.get(sg_id)
        if found is None:
            name = self.raw[sg_id].get("name")
            what = f"subgraph {sg_id}" + (f" ({name!r})" if isinstance(name, str) else "")
            found = Graph(self.raw[sg_id], self.errors, what)
            self._graphs[sg_id] = found
        return found

    def io_slots(self, sg_id: str, key: str) -> list[Mapping[str, Any]]:
        """The definition's ``inputs`` or ``outputs`` (each with ``name``, ``type``,
        ``linkIds``)."""
        return slot_list(self.raw[sg_id], key)


class Scope:
    """The root graph, or one instance of a subgraph with the path that leads to it."""

    def __init__(
        self,
        graph: Graph,
        path: tuple[str, ...] = (),
        *,
        parent: Scope | None = None,
        instance: Mapping[str, Any] | None = None,
        sg_id: str | None = None,
    ) -> None:
        self.graph = graph
        self.path = path
        self.parent = parent
        self.instance = instance
        self.sg_id = sg_id
        self.children: dict[str, Scope] = {}
        # definition input index -> the saved instance input it maps to / its promoted value
        self.instance_inputs: dict[int, Mapping[str, Any]] = {}
        self.promoted: dict[int, Any] = {}

    def exec_id(self, node_id: str) -> str:
        return ":".join((*self.path, node_id))

    def describe(self, node_id: str) -> str:
        return describe_node(self.exec_id(node_id), self.graph.nodes.get(node_id, {}))

    def ancestors(self) -> list[str]:
        chain: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            if scope.sg_id:
                chain.append(scope.sg_id)
            scope = scope.parent
        return chain


def child_scope(
    scope: Scope, node_id: str, defs: Definitions, catalog: NodeCatalog, errors: UiErrors
) -> Scope:
    """The scope of instance ``node_id`` of ``scope`` (made once, then reused)."""
    found = scope.children.get(node_id)
    if found is not None:
        return found
    instance = scope.graph.nodes[node_id]
    sg_id = str(instance.get("type"))
    if len(scope.path) >= MAX_DEPTH:
        raise errors.error(
            f"{scope.describe(node_id)} is a subgraph nested more than {MAX_DEPTH} deep",
            "flatten some of the subgraphs in ComfyUI (right-click > Unpack Subgraph)",
        )
    if sg_id in scope.ancestors():
        raise errors.error(
            f"{scope.describe(node_id)} uses subgraph {sg_id} inside itself",
            "remove the instance from its own definition in ComfyUI",
        )
    child = Scope(
        defs.graph(sg_id), (*scope.path, node_id), parent=scope, instance=instance, sg_id=sg_id
    )
    _bind_instance_inputs(child, defs)
    _promoted_values(child, defs, catalog)
    scope.children[node_id] = child
    return child


def _bind_instance_inputs(child: Scope, defs: Definitions) -> None:
    """Definition input k -> the saved instance input of the same name and type, else name."""
    assert child.instance is not None and child.sg_id is not None
    saved = slot_list(child.instance, "inputs")
    taken: set[int] = set()
    for k, slot in enumerate(defs.io_slots(child.sg_id, "inputs")):
        name, kind = slot.get("name"), slot.get("type")
        match = next(
            (
                i
                for i, s in enumerate(saved)
                if i not in taken and (s.get("name"), s.get("type")) == (name, kind)
            ),
            None,
        )
        if match is None:
            match = next(
                (i for i, s in enumerate(saved) if i not in taken and s.get("name") == name), None
            )
        if match is not None:
            taken.add(match)
            child.instance_inputs[k] = saved[match]


def _promoted_values(child: Scope, defs: Definitions, catalog: NodeCatalog) -> None:
    """Give each promoted definition input its value from the instance's widgets_values."""
    assert child.instance is not None and child.sg_id is not None
    values = child.instance.get("widgets_values")
    if not isinstance(values, list) or not values:
        return
    promoted: list[tuple[int, bool]] = []  # (definition input, has a control companion)
    for k, slot in enumerate(defs.io_slots(child.sg_id, "inputs")):
        target = _widget_target(child, slot, catalog)
        if target is not None:
            promoted.append((k, target))
    extra_slots = len(values) > len(promoted)
    position = 0
    for k, has_control in promoted:
        if position >= len(values):
            break
        value = values[position]
        position += 1
        if value is not None:
            child.promoted[k] = value
        next_value = values[position] if position < len(values) else None
        if extra_slots and has_control and next_value in _CONTROL_VALUES:
            position += 1


def _widget_target(child: Scope, slot: Mapping[str, Any], catalog: NodeCatalog) -> bool | None:
    """None if the definition input feeds no widget; else whether that widget is seed-like
    (it has a control_after_generate companion value)."""
    link_ids = slot.get("linkIds")
    if not isinstance(link_ids, list):
        return None
    for link_id in link_ids:
        rec = child.graph.links.get(link_id) if isinstance(link_id, int) else None
        if rec is None:
            continue
        node = child.graph.nodes.get(rec.target_id)
        if node is None:
            continue
        entry = next(
            (e for e in slot_list(node, "inputs") if e.get("link") == link_id),
            None,
        )
        if entry is None or "widget" not in entry:
            continue
        name = entry.get("name")
        definition = catalog.get(str(node.get("type"))) if node.get("type") in catalog else None
        spec = definition.inputs.get(str(name)) if definition is not None else None
        if spec is not None:
            seed_like = spec.type == "INT" and "seed" in str(name).lower()
            return spec.control_after_generate or seed_like
        return False
    return None


def group_node_error(errors: UiErrors, scope: Scope, node_id: str) -> Exception:
    return errors.error(
        f"{scope.describe(node_id)} is a legacy group node, which cannot be converted",
        "convert it to a subgraph in ComfyUI (right-click > Convert to Subgraph), or export "
        "the workflow with 'Export (API)'",
    )


def missing_definition_error(errors: UiErrors, scope: Scope, node_id: str) -> Exception:
    return errors.error(
        f"{scope.describe(node_id)} is a subgraph instance whose definition is not in the file",
        "re-save the workflow in ComfyUI so that 'definitions.subgraphs' holds it",
    )
