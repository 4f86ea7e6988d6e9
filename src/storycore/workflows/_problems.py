"""What the preflight finds: a :class:`Problem` per finding, a :class:`PreflightReport` per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from storycore.errors import PreflightFailed

if TYPE_CHECKING:
    from storycore.workflows._complexity import ProjectComplexity
    from storycore.workflows._graph import BuiltGraph

__all__ = ["PreflightReport", "Problem", "Severity"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (``error``) or worth knowing (``warning``) about one shot's graph.

    ``code`` follows ComfyUI's validation error types where one exists (``value_not_in_list``,
    ``required_input_missing``, ``return_type_mismatch``, ``bad_linked_input``,
    ``invalid_input_type``, ``value_smaller_than_min`` ...); StoryCore's own checks add
    ``missing_node_class``, ``missing_class_type``, ``link_to_missing_node``,
    ``invalid_output_slot``, ``model_missing``, ``cycle``, ``prompt_no_outputs``,
    ``image_missing``, ``image_unreadable``, ``filename_prefix_collision``,
    ``ipadapter_models_missing``, ``build_failed`` and ``paid_api_node`` (errors); ``unused_node``,
    ``image_not_on_server``, ``ipadapter_models_unchecked``, ``preprocessor_downloads``,
    ``deprecated_node`` and ``graph_note`` (warnings).
    """

    code: str
    message: str
    shot_id: str | None = None
    node_id: str | None = None
    class_type: str | None = None
    input_name: str | None = None
    hint: str | None = None
    severity: Severity = "error"
    nodes: tuple[str, ...] = ()

    def where(self) -> str:
        parts = []
        if self.shot_id is not None:
            parts.append(f"shot {self.shot_id}")
        if self.node_id is not None:
            node = f"node {self.node_id}"
            if self.class_type:
                node += f" ({self.class_type})"
            if self.input_name:
                node += f" input {self.input_name}"
            parts.append(node)
        return ", ".join(parts) or "project"

    def paragraph(self) -> str:
        text = f"{self.where()}: {self.message.rstrip('.')}."
        if self.hint:
            hint = self.hint.rstrip(".")
            text += f" {hint[:1].upper()}{hint[1:]}."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "shot_id": self.shot_id,
            "node_id": self.node_id,
            "class_type": self.class_type,
            "input_name": self.input_name,
            "message": self.message,
            "hint": self.hint,
            "nodes": list(self.nodes),
        }


@dataclass(frozen=True)
class PreflightReport:
    """Every problem of a whole project, found before anything is submitted."""

    problems: tuple[Problem, ...]
    shots: tuple[str, ...] = ()
    graphs: Mapping[str, BuiltGraph] = field(default_factory=dict, compare=False, repr=False)
    complexity: ProjectComplexity | None = field(default=None, compare=False)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def for_shot(self, shot_id: str) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.shot_id == shot_id)

    def missing_classes(self) -> dict[str, list[str]]:
        """Each missing node class with the ``shot/node`` places that use it."""
        found: dict[str, list[str]] = {}
        for problem in self.problems:
            if problem.code == "missing_node_class" and problem.class_type:
                found.setdefault(problem.class_type, []).append(
                    f"{problem.shot_id}/{problem.node_id}"
                )
        return found

    def summary(self) -> str:
        errors, warnings = len(self.errors), len(self.warnings)
        return f"{len(self.shots)} shot(s) checked: {errors} error(s), {warnings} warning(s)"

    def raise_for_problems(self) -> None:
        """Raise :class:`PreflightFailed` (listing every error) when there is any error."""
        if self.ok:
            return
        first = self.errors[0]
        raise PreflightFailed(
            f"the preflight found {len(self.errors)} problem(s); first: {first.paragraph()}",
            where=first.where(),
            hint="run 'storycore preflight' to see every problem with its shot and node",
            problems=self.errors,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "shots": list(self.shots),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
            "missing_classes": self.missing_classes(),
            "complexity": self.complexity.to_dict() if self.complexity is not None else None,
        }
