"""What binding inference found, and the binding file it writes (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Bound", "InferredBindings", "NotBound", "NotBoundKind", "binding_file_text"]

NotBoundKind = Literal["absent", "kept", "none", "unknown"]


@dataclass(frozen=True)
class Bound:
    """One inferred target: panel value ``value`` goes to ``node_id``'s input ``input``."""

    value: str  # a binding name, or "controls.<kind>"
    node_id: str
    class_type: str
    title: str | None
    input: str
    target: str  # how the binding file names it: "<title or id>.<input>"
    note: str = ""


@dataclass(frozen=True)
class NotBound:
    """A panel value (or a model) left as the workflow has it, and why."""

    value: str
    reason: str
    kind: NotBoundKind = "absent"


@dataclass(frozen=True)
class InferredBindings:
    """What :func:`infer_bindings` found."""

    bound: tuple[Bound, ...]
    not_bound: tuple[NotBound, ...]
    sampler_id: str
    output_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()
    graph: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def bindings(self) -> dict[str, Any]:
        """The ``[bindings]`` table of a binding file (one target: a text; more: a list)."""
        grouped: dict[str, list[str]] = {}
        for item in self.bound:
            grouped.setdefault(item.value, []).append(item.target)
        table: dict[str, Any] = {}
        controls: dict[str, Any] = {}
        for value, targets in grouped.items():
            shaped: Any = targets[0] if len(targets) == 1 else targets
            if value.startswith("controls."):
                controls[value.split(".", 1)[1]] = targets
            elif value in ("references", "init_image"):
                table[value] = targets
            else:
                table[value] = shaped
        if controls:
            table["controls"] = controls
        return table


def _comment(text: str) -> str:
    """Text from a workflow (titles, file names) made safe for one TOML comment line."""
    return "".join(c if c.isprintable() else " " for c in text)


def binding_file_text(name: str, workflow_file: str, inferred: InferredBindings) -> str:
    """The binding file for ``inferred`` (TOML), with what was not bound as comments."""
    from storycore._config_text import toml_value

    lines = [
        f"# Bindings inferred by 'storycore template add' from {_comment(workflow_file)}.",
        "# Edit freely (examples/templates/README.md); 'storycore preflight' checks them.",
        f"name = {toml_value(name)}",
        f"workflow = {toml_value(workflow_file)}",
        "",
        "[bindings]",
    ]
    table = inferred.bindings()
    controls = table.pop("controls", None)
    for key, value in table.items():
        lines.append(f"{key} = {toml_value(value)}")
    if controls:
        lines += ["", "[bindings.controls]"]
        lines += [f"{kind} = {toml_value(targets)}" for kind, targets in controls.items()]
    if inferred.not_bound or inferred.notes:
        lines += ["", "# Not bound:"]
        lines += [f"#   {item.value}: {_comment(item.reason)}" for item in inferred.not_bound]
        lines += [f"# Note: {_comment(note)}" for note in inferred.notes]
    return "\n".join(lines) + "\n"
