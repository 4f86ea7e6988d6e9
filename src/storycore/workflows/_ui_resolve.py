"""Where a UI node's input really comes from, across subgraphs and virtual nodes (pure).

Follows the front end's ``ExecutableNodeDTO.resolveInput`` / ``resolveOutput``
(ComfyUI_frontend src/lib/litegraph/src/subgraph/ExecutableNodeDTO.ts @ 01b3aeae), written
anew:

* a link from a subgraph's input box (node ``-10``) goes up to the instance: its linked input,
  else its promoted widget value, else nothing (the inner node keeps its own value);
* a link from an instance goes down to the node that feeds the definition's output;
* a bypassed node (mode 4) passes on the input that matches the type: the input at the same
  index if its type fits both the output and the consumer, else the first input of exactly the
  consumer's type, else the first that connects (``_getBypassSlotIndex``); for a ``*`` consumer,
  the same index or the first input;
* a muted node (mode 2) gives nothing: the consumer's input is left out;
* ``Reroute`` passes its input on; ``PrimitiveNode`` gives its value (``widgets_values[0]``);
* KJNodes' ``GetNode`` reads the ``SetNode`` of the same name in the same graph
  (ComfyUI-KJNodes web/js/setgetnodes.js); Note and MarkdownNote have no outputs.

The result is a link ``[execution id, slot]``, a value, or :data:`NOTHING`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storycore.workflows._nodedefs import NodeCatalog
from storycore.workflows._subgraphs import Definitions, Scope, child_scope
from storycore.workflows._ui_graph import (
    IO_INPUT_ID,
    UiErrors,
    node_mode,
    slot_list,
    types_connect,
)

__all__ = ["MODE_BYPASS", "MODE_MUTED", "NOTHING", "Resolver", "Value"]

MODE_MUTED = 2
MODE_BYPASS = 4
_MAX_HOPS = 200  # links followed for one input: far past real chains, short of the stack


@dataclass(frozen=True)
class Value:
    """An input that resolves to a value (a primitive node's, or a promoted widget's)."""

    value: Any


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()
Resolved = list[Any] | Value | _Nothing


class Resolver:
    def __init__(self, defs: Definitions, catalog: NodeCatalog, errors: UiErrors) -> None:
        self.defs = defs
        self.catalog = catalog
        self.errors = errors

    def input(self, scope: Scope, node_id: str, entry: Mapping[str, Any]) -> Resolved:
        """What input ``entry`` of node ``node_id`` receives."""
        return self._input(scope, node_id, entry, set())

    def _guard(
        self, seen: set[tuple[Any, ...]], key: tuple[Any, ...], scope: Scope, node_id: str
    ) -> None:
        if key in seen:
            raise self.errors.error(
                f"the links into {scope.describe(node_id)} form a loop (through reroutes, "
                "bypassed nodes or subgraphs)",
                "remove the loop in ComfyUI",
            )
        if len(seen) > _MAX_HOPS:
            raise self.errors.error(
                f"the links into {scope.describe(node_id)} pass more than {_MAX_HOPS} "
                "reroutes, bypassed nodes or subgraph boundaries",
                "simplify the workflow in ComfyUI",
            )
        seen.add(key)

    def _input(
        self, scope: Scope, node_id: str, entry: Mapping[str, Any], seen: set[tuple[Any, ...]]
    ) -> Resolved:
        raw_link = entry.get("link")
        if raw_link is None:
            return NOTHING
        link_id = self.errors.number(raw_link, f"the link of an input of {scope.describe(node_id)}")
        self._guard(seen, (scope.path, node_id, "I", link_id), scope, node_id)
        rec = scope.graph.links.get(link_id)
        if rec is None:
            # A link id with no link: the front end drops such links when it loads the file
            # (its workflow validation repairs them), so the input is simply not connected.
            return NOTHING
        if rec.origin_id == IO_INPUT_ID and scope.instance is not None:
            return self._from_instance_input(scope, rec.origin_slot, seen)
        if rec.origin_id not in scope.graph.nodes:
            return NOTHING
        return self._output(scope, rec.origin_id, rec.origin_slot, entry.get("type"), seen)

    def _from_instance_input(self, scope: Scope, k: int, seen: set[tuple[Any, ...]]) -> Resolved:
        assert scope.parent is not None
        saved = scope.instance_inputs.get(k)
        if saved is not None and saved.get("link") is not None:
            return self._input(scope.parent, scope.path[-1], saved, seen)
        if k in scope.promoted:
            return Value(scope.promoted[k])
        return NOTHING

    def _output(
        self, scope: Scope, node_id: str, slot: int, want: Any, seen: set[tuple[Any, ...]]
    ) -> Resolved:
        self._guard(seen, (scope.path, node_id, "O", slot), scope, node_id)
        node = scope.graph.nodes[node_id]
        kind = node.get("type")
        mode = node_mode(node)
        if mode == MODE_MUTED:
            return NOTHING
        if mode == MODE_BYPASS:
            inputs = slot_list(node, "inputs")
            index = _bypass_index(node, slot, want)
            if index is None:
                return NOTHING
            return self._input(scope, node_id, inputs[index], seen)
        if kind in self.defs:
            return self._from_instance_output(scope, node_id, slot, want, seen)
        if kind == "PrimitiveNode":
            values = node.get("widgets_values")
            return Value(values[0]) if isinstance(values, list) and values else NOTHING
        if kind in ("Reroute", "SetNode"):
            inputs = slot_list(node, "inputs")
            return self._input(scope, node_id, inputs[0], seen) if inputs else NOTHING
        if kind == "GetNode":
            return self._from_set_node(scope, node_id, want, seen)
        if kind in ("Note", "MarkdownNote"):
            return NOTHING
        return [scope.exec_id(node_id), slot]

    def _from_instance_output(
        self, scope: Scope, node_id: str, slot: int, want: Any, seen: set[tuple[Any, ...]]
    ) -> Resolved:
        child = child_scope(scope, node_id, self.defs, self.catalog, self.errors)
        assert child.sg_id is not None
        outputs = self.defs.io_slots(child.sg_id, "outputs")
        link_ids = outputs[slot].get("linkIds") if slot < len(outputs) else None
        for link_id in link_ids if isinstance(link_ids, list) else []:
            rec = child.graph.links.get(link_id) if isinstance(link_id, int) else None
            if rec is None:
                continue
            if rec.origin_id == IO_INPUT_ID:
                return self._from_instance_input(child, rec.origin_slot, seen)
            if rec.origin_id in child.graph.nodes:
                return self._output(child, rec.origin_id, rec.origin_slot, want, seen)
        return NOTHING

    def _from_set_node(
        self, scope: Scope, node_id: str, want: Any, seen: set[tuple[Any, ...]]
    ) -> Resolved:
        node = scope.graph.nodes[node_id]
        values = node.get("widgets_values")
        name = values[0] if isinstance(values, list) and values else None
        for other_id, other in scope.graph.nodes.items():
            other_values = other.get("widgets_values")
            if (
                other.get("type") == "SetNode"
                and isinstance(other_values, list)
                and other_values
                and other_values[0] == name
            ):
                return self._output(scope, other_id, 0, want, seen)
        raise self.errors.error(
            f"{scope.describe(node_id)} reads {name!r}, but no SetNode in {scope.graph.what} "
            "sets it",
            "add the matching Set node (KJNodes) or link the value directly",
        )


def _bypass_index(node: Mapping[str, Any], slot: int, want: Any) -> int | None:
    inputs = slot_list(node, "inputs")
    if not inputs:
        return None
    outputs = slot_list(node, "outputs")
    out_type = outputs[slot].get("type") if slot < len(outputs) else None
    if want in ("*", "", None):
        return slot if slot < len(inputs) else 0
    if slot < len(inputs):
        same = inputs[slot].get("type")
        if types_connect(same, out_type) and types_connect(same, want):
            return slot
    for i, entry in enumerate(inputs):
        if entry.get("type") == want:
            return i
    for i, entry in enumerate(inputs):
        kind = entry.get("type")
        if types_connect(kind, out_type) and types_connect(kind, want):
            return i
    return None
