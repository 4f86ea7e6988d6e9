"""``POST /prompt`` validation with ComfyUI's rules and error bodies.

Pure functions: given a prompt and the node definitions, say which outputs can run and which
nodes failed and why, with the same ``type``/``message``/``details``/``extra_info`` values a
real ComfyUI 0.3.64 returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._nodedefs import NodeDefs

__all__ = ["CUSTOM_VALIDATORS", "ValidationResult", "validate_prompt"]

# Fake source lines for the traceback lists ComfyUI puts in exception_during_validation.
_TB_OUTER = [
    '  File "/opt/ComfyUI/execution.py", line 1010, in validate_prompt\n'
    "    m = await validate_inputs(prompt_id, prompt, o, validated)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    '  File "/opt/ComfyUI/execution.py", line 788, in validate_inputs\n'
    "    o_class_type = prompt[o_id]['class_type']\n"
    "                   ~~~~~~^^^^^^\n",
]
_TB_INNER = [_TB_OUTER[1]]

# class_type -> (input names the node validates itself, validator(inputs) -> True | message)
Validator = Callable[[dict[str, Any]], "bool | str"]
CUSTOM_VALIDATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "LoadImage": (("image",), "input_image"),
    "LoadImageMask": (("image",), "input_image"),
}


@dataclass
class ValidationResult:
    ok: bool
    error: dict[str, Any] | None
    good_outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


class _LinkError(Exception):
    """A link points at a node id that is not in the prompt (ComfyUI raises KeyError)."""


def _err(type_: str, message: str, details: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


def _invalid_prompt(message: str, details: str) -> dict[str, Any]:
    return _err("invalid_prompt", message, details, {})


def validate_node_input(received: Any, expected: Any) -> bool:
    """Whether an output of type ``received`` may feed an input of type ``expected``."""
    if received == expected:
        return True
    if isinstance(expected, list) or expected == "COMBO":
        return isinstance(received, list) or received == "COMBO"
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if received == "*" or expected == "*":
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want) or "*" in got or "*" in want


def _convert(input_type: Any, val: Any) -> Any:
    if input_type == "INT":
        return int(val)
    if input_type == "FLOAT":
        return float(val)
    if input_type == "STRING":
        return str(val)
    if input_type == "BOOLEAN":
        return bool(val)
    return val


class _Validator:
    def __init__(
        self,
        prompt: dict[str, Any],
        defs: NodeDefs,
        custom: Callable[[str, str, Any], bool | str],
    ) -> None:
        self.prompt = prompt
        self.defs = defs
        self.custom = custom
        self.validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
        self.visiting: list[str] = []

    def _cycle(self, uid: str) -> tuple[bool, list[dict[str, Any]], str]:
        """Mark every node of the cycle that closes at ``uid`` (as newer ComfyUI does)."""
        nodes = self.visiting[self.visiting.index(uid) :]
        path = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in [*nodes, uid])
        for n in nodes:
            err = _err(
                "dependency_cycle",
                "Dependency cycle detected",
                path,
                {"node_id": n, "cycle_nodes": list(nodes)},
            )
            self.validated[n] = (False, [err], n)
        return self.validated[uid]

    def node(self, uid: str) -> tuple[bool, list[dict[str, Any]], str]:
        if uid in self.visiting:
            return self._cycle(uid)
        if uid in self.validated:
            return self.validated[uid]
        if uid not in self.prompt:
            raise _LinkError(uid)
        self.visiting.append(uid)
        try:
            return self._node(uid)
        finally:
            self.visiting.pop()

    def _node(self, uid: str) -> tuple[bool, list[dict[str, Any]], str]:
        node = self.prompt[uid]
        inputs: dict[str, Any] = node.get("inputs", {})
        class_type: str = node["class_type"]
        self_validated = CUSTOM_VALIDATORS.get(class_type, ((), ""))[0]
        errors: list[dict[str, Any]] = []
        valid = True
        for category, name, spec in self.defs.inputs(class_type):
            input_type = spec[0]
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            info = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        _err(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            {"input_name": name},
                        )
                    )
                continue
            val = inputs[name]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(
                        _err(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            {"input_name": name, "input_config": info, "received_value": val},
                        )
                    )
                    continue
                o_id = val[0]
                if not isinstance(o_id, str) or o_id not in self.prompt:
                    raise _LinkError(str(o_id))
                returns = self.defs.return_types(self.prompt[o_id]["class_type"])
                try:
                    received = returns[val[1]]
                except (IndexError, TypeError) as exc:
                    raise _LinkError(str(exc)) from exc
                if not validate_node_input(received, input_type):
                    errors.append(
                        _err(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({input_type})",
                            {
                                "input_name": name,
                                "input_config": info,
                                "received_type": received,
                                "linked_node": val,
                            },
                        )
                    )
                    continue
                try:
                    sub = self.node(o_id)
                except _LinkError as exc:
                    valid = False
                    self.validated[o_id] = (
                        False,
                        [
                            _err(
                                "exception_during_inner_validation",
                                "Exception when validating inner node",
                                repr(str(exc)),
                                {
                                    "input_name": name,
                                    "input_config": info,
                                    "exception_message": repr(str(exc)),
                                    "exception_type": "KeyError",
                                    "traceback": list(_TB_INNER),
                                    "linked_node": val,
                                },
                            )
                        ],
                        o_id,
                    )
                    continue
                if not sub[0]:
                    valid = False
                continue
            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = val["__value__"]
                    inputs[name] = val
                converted = _convert(input_type, val)
                if converted is not val:
                    inputs[name] = converted
                val = converted
            except Exception as exc:
                errors.append(
                    _err(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {input_type} value",
                        f"{name}, {val}, {exc}",
                        {
                            "input_name": name,
                            "input_config": info,
                            "received_value": val,
                            "exception_message": str(exc),
                        },
                    )
                )
                continue
            if name in self_validated:
                continue
            if "min" in extra and _lt(val, extra["min"]):
                errors.append(
                    _err(
                        "value_smaller_than_min",
                        f"Value {val} smaller than min of {extra['min']}",
                        name,
                        {"input_name": name, "input_config": info, "received_value": val},
                    )
                )
                continue
            if "max" in extra and _lt(extra["max"], val):
                errors.append(
                    _err(
                        "value_bigger_than_max",
                        f"Value {val} bigger than max of {extra['max']}",
                        name,
                        {"input_name": name, "input_config": info, "received_value": val},
                    )
                )
                continue
            options = self.defs.combo_options(spec)
            if options is not None and not _in(val, options):
                list_info = str(options)
                config: Any = info
                if len(options) > 20:
                    list_info = f"(list of length {len(options)})"
                    config = None
                errors.append(
                    _err(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: {val!r} not in {list_info}",
                        {"input_name": name, "input_config": config, "received_value": val},
                    )
                )
                continue
        for name in self_validated:
            if name in inputs and not isinstance(inputs[name], list):
                ret = self.custom(class_type, name, inputs[name])
                if ret is not True:
                    details = name if ret is False else f"{name} - {ret}"
                    errors.append(
                        _err(
                            "custom_validation_failed",
                            "Custom validation failed for node",
                            details,
                            {"input_name": name},
                        )
                    )
        prev = self.validated.get(uid, (True, [], uid))
        result = (prev[0] and valid and not errors, prev[1] + errors, uid)
        self.validated[uid] = result
        return result


def _lt(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return False


def _in(val: Any, options: Sequence[Any]) -> bool:
    try:
        return val in options
    except TypeError:
        return False


def validate_prompt(
    prompt: dict[str, Any],
    defs: NodeDefs,
    partial_targets: Sequence[str] | None,
    custom: Callable[[str, str, Any], bool | str],
) -> ValidationResult:
    """Validate like ComfyUI's ``validate_prompt`` (``prompt`` values may be converted in place)."""
    outputs: list[str] = []
    for uid, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            err = _invalid_prompt(
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{uid}'",
            )
            return ValidationResult(False, err, [])
        class_type = node["class_type"]
        if class_type not in defs:
            err = _invalid_prompt(
                f"Cannot execute because node {class_type} does not exist.", f"Node ID '#{uid}'"
            )
            return ValidationResult(False, err, [])
        if not isinstance(node.get("inputs", {}), dict):
            node["inputs"] = {}
        if defs.is_output(class_type) and (partial_targets is None or uid in partial_targets):
            outputs.append(uid)
    if not outputs:
        return ValidationResult(
            False, _err("prompt_no_outputs", "Prompt has no outputs", "", {}), []
        )
    v = _Validator(prompt, defs, custom)
    good: list[str] = []
    failures: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for o in outputs:
        try:
            ok, reasons, _ = v.node(o)
        except _LinkError as exc:
            ok = False
            reasons = [
                _err(
                    "exception_during_validation",
                    "Exception when validating node",
                    repr(str(exc)),
                    {"exception_type": "KeyError", "traceback": list(_TB_OUTER)},
                )
            ]
            v.validated[o] = (False, reasons, o)
        if ok:
            good.append(o)
            continue
        failures.append((o, reasons))
        for node_id, (n_ok, n_reasons, _) in v.validated.items():
            if not n_ok and n_reasons:
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": n_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        err = _err(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {}
        )
        return ValidationResult(False, err, [], node_errors)
    return ValidationResult(True, None, good, node_errors)
