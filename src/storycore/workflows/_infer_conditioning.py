"""Following conditioning links up to the text encoders that make them (pure).

The walk passes through any node whose output is conditioning made from conditioning (combine,
concat, set area / mask / timestep range, StyleModelApply, ControlNet apply: a node with outputs
named ``positive`` and ``negative`` is followed along the input of the same name), notes
FluxGuidance nodes on the way (their ``guidance`` input) and stops at a text encoder or a
ConditioningZeroOut. Classes and input names: ComfyUI ``nodes.py`` @ 5aabaf51,
``comfy_extras/nodes_flux.py``, and the recorded ``/object_info`` of ComfyUI 0.3.64.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from storycore.workflows._infer_graph import TEXT_INPUTS, GraphView

__all__ = ["Trace", "text_inputs", "trace"]


@dataclass
class Trace:
    """What feeds a conditioning input: text encoders, zeroed conditionings, guidance inputs,
    and nodes the walk could not see past."""

    encoders: list[str] = field(default_factory=list)
    zeroed: list[str] = field(default_factory=list)
    guidance: list[tuple[str, str]] = field(default_factory=list)
    dead_ends: list[str] = field(default_factory=list)


def trace(view: GraphView, entries: list[tuple[str, str]]) -> Trace:
    """Walk up from conditioning inputs ``entries`` to the text encoders that feed them."""
    found = Trace()
    todo = deque(o for o in (view.source(n, i) for n, i in entries) if o is not None)
    seen: set[tuple[str, int]] = set()
    while todo:
        node_id, slot = todo.popleft()
        if (node_id, slot) in seen:
            continue
        seen.add((node_id, slot))
        cls = view.class_of(node_id)
        if text_inputs(view, node_id):
            found.encoders.append(node_id)
            if view.has_input(node_id, "guidance"):
                found.guidance.append((node_id, "guidance"))
            continue
        if cls == "ConditioningZeroOut":
            found.zeroed.append(node_id)
            continue
        if cls == "FluxGuidance":
            found.guidance.append((node_id, "guidance"))
        links = view.link_inputs(node_id)
        out_name = (view.output_name(node_id, slot) or "").lower()
        follow = [n for n in links if n == out_name] or [
            n
            for n in links
            if view.input_type(node_id, n) == "CONDITIONING"
            or (view.input_type(node_id, n) is None and "cond" in n)
        ]
        if not follow:
            found.dead_ends.append(node_id)
        todo.extend(o for o in (view.source(node_id, n) for n in follow) if o is not None)
    return found


def text_inputs(view: GraphView, node_id: str) -> tuple[str, ...]:
    """The prompt inputs of a text encoder; ``()`` for any other node."""
    cls = view.class_of(node_id)
    if cls in TEXT_INPUTS:
        return TEXT_INPUTS[cls]
    if view.catalog is not None and cls in view.catalog:
        definition = view.catalog[cls]
        takes_conditioning = any(s.type == "CONDITIONING" for s in definition.inputs.values())
        if "CONDITIONING" in definition.outputs and not takes_conditioning:
            return tuple(view.widget_inputs(node_id, frozenset({"STRING"})))
    return ()
