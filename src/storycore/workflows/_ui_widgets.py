"""A UI node's ``widgets_values`` as named API inputs (pure).

The front end saves widget values positionally, in the order of the class's widget inputs in
``/object_info`` (``input_order``, required then optional). Not every input has a widget:

* link-only types (``MODEL``, ``IMAGE``, ``*``) and inputs with ``forceInput`` own no value;
* a widget converted to an input (old files: the input carries ``widget: {name}`` and a link)
  still has its value saved, and the link decides later;
* after a seed-like INT (``control_after_generate``, or an INT named like ``seed``) the front end
  stores the control widget's value (``"randomize"``, ``"fixed"``, ...), which is no input;
* after an ``image_upload`` combo (LoadImage) it stores the upload button's value;
* a dynamic combo (``COMFY_DYNAMICCOMBO_V3``) stores its selected option, then the values of
  that option's own widget inputs, which the API names ``parent.child``
  (ComfyUI comfy_api/latest/_io.py @ 58a8a96c ``DynamicCombo``; the server re-nests dotted
  names).

``widgets_values`` may also be an object (name -> value), as some node packs save it.
Behaviour compared with comfy-cli comfy_cli/workflow_to_api.py @ e805d26b
(``_schema_widget_pairs``, ``_has_control_after_generate_companion``); the code is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storycore.workflows._nodedefs import WIDGET_TYPES, InputSpec, NodeDef, parse_input

__all__ = ["DYNAMIC_COMBO", "widget_inputs", "wrap_value"]

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_MAX_DYNAMIC_DEPTH = 8


def wrap_value(value: Any) -> Any:
    """A list value is sent as ``{"__value__": [...]}`` so the server does not read it as a
    link (ComfyUI_frontend src/utils/executionUtil.ts @ 01c735d9 ``graphToPrompt``)."""
    return {"__value__": value} if isinstance(value, list) else value


def _is_widget(spec: InputSpec) -> bool:
    return spec.type == DYNAMIC_COMBO or spec.is_widget


def _has_companion(spec: InputSpec, next_value: Any, next_spec: InputSpec | None) -> bool:
    if spec.image_upload:
        return next_value in ("image", "upload", None)
    if not (isinstance(next_value, str) and next_value in _CONTROL_VALUES):
        return False
    if spec.control_after_generate:
        return True
    if not (spec.type == "INT" and "seed" in spec.name.lower()):
        return False
    # an implicit (seed-named) companion never eats a value the next combo offers as a choice
    return not (next_spec is not None and next_spec.choices and next_value in next_spec.choices)


def _raw_options(definition: NodeDef, name: str) -> Mapping[str, Any]:
    raw_inputs = definition.raw.get("input")
    if not isinstance(raw_inputs, Mapping):
        return {}
    for section in ("required", "optional"):
        entries = raw_inputs.get(section)
        spec = entries.get(name) if isinstance(entries, Mapping) else None
        if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], Mapping):
            return spec[1]
    return {}


def _option_specs(options: Mapping[str, Any], selected: Any, where: str) -> list[InputSpec]:
    """The inputs of a dynamic combo's selected option, in their saved order."""
    for option in options.get("options") or ():
        if not isinstance(option, Mapping) or option.get("key") != selected:
            continue
        inputs = option.get("inputs")
        if not isinstance(inputs, Mapping):
            return []
        specs: list[InputSpec] = []
        for section in ("required", "optional"):
            entries = inputs.get(section)
            if isinstance(entries, Mapping):
                specs.extend(parse_input(str(n), section, s, where) for n, s in entries.items())
        return specs
    return []


class _Walk:
    def __init__(self, values: list[Any], definition: NodeDef, force_widgets: set[str]) -> None:
        self.values = values
        self.definition = definition
        self.force_widgets = force_widgets
        self.position = 0
        self.out: dict[str, Any] = {}

    def run(self, specs: list[InputSpec], prefix: str, options_of: Any, depth: int) -> None:
        widgets = [
            s for s in specs if _is_widget(s) or (not prefix and s.name in self.force_widgets)
        ]
        for i, spec in enumerate(widgets):
            if self.position >= len(self.values):
                return
            value = self.values[self.position]
            self.position += 1
            self.out[prefix + spec.name] = value
            if spec.type == DYNAMIC_COMBO:
                if depth < _MAX_DYNAMIC_DEPTH:
                    options = options_of(spec.name)
                    where = f"/object_info {self.definition.name} {prefix}{spec.name}"
                    subs = _option_specs(options, value, where)
                    sub_options = _sub_options(options, value)
                    self.run(subs, f"{prefix}{spec.name}.", sub_options, depth + 1)
                continue
            nxt = self.values[self.position] if self.position < len(self.values) else None
            next_spec = widgets[i + 1] if i + 1 < len(widgets) else None
            if self.position < len(self.values) and _has_companion(spec, nxt, next_spec):
                self.position += 1


def _sub_options(options: Mapping[str, Any], selected: Any) -> Any:
    def options_of(name: str) -> Mapping[str, Any]:
        for option in options.get("options") or ():
            if isinstance(option, Mapping) and option.get("key") == selected:
                inputs = option.get("inputs")
                for section in ("required", "optional"):
                    entries = inputs.get(section) if isinstance(inputs, Mapping) else None
                    spec = entries.get(name) if isinstance(entries, Mapping) else None
                    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], Mapping):
                        return spec[1]
        return {}

    return options_of


def _old_force_inputs(
    node: Mapping[str, Any], specs: list[InputSpec], values: list[Any]
) -> set[str]:
    """``forceInput`` inputs that still own a saved value: front ends before the widget-socket
    rework saved them as converted widgets (the input carries ``widget: {name}``) with a value
    in ``widgets_values`` (ComfyUI_frontend browser_tests/assets/inputs/force_input.json
    @ 1c273164). They count only when the values outnumber what the other widgets can hold."""
    saved = {
        entry.get("name")
        for entry in node.get("inputs") or ()
        if isinstance(entry, Mapping) and isinstance(entry.get("widget"), Mapping)
    }
    forced = {s.name for s in specs if s.force_input and s.type in WIDGET_TYPES and s.name in saved}
    if not forced:
        return set()
    plain = [s for s in specs if _is_widget(s)]
    room = len(plain) + sum(1 for s in plain if s.image_upload or s.type == "INT")
    if any(s.type == DYNAMIC_COMBO for s in plain) or len(values) <= room:
        return set()
    return forced


def widget_inputs(node: Mapping[str, Any], definition: NodeDef) -> dict[str, Any]:
    """The API inputs that a node's saved widget values give (links come later)."""
    values = node.get("widgets_values")
    specs = [definition.inputs[n] for n in definition.input_order]
    if isinstance(values, Mapping):
        wanted = {s.name for s in specs if _is_widget(s)}
        dynamic = {s.name for s in specs if s.type == DYNAMIC_COMBO}
        return {
            str(k): wrap_value(v)
            for k, v in values.items()
            if k in wanted or str(k).split(".", 1)[0] in dynamic
        }
    if not isinstance(values, list):
        return {}
    walk = _Walk(values, definition, _old_force_inputs(node, specs, values))
    walk.run(specs, "", lambda name: _raw_options(definition, name), 0)
    return {k: wrap_value(v) for k, v in walk.out.items()}
