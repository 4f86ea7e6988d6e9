"""Split one prompt's run into phases from ComfyUI's WebSocket events. Pure.

Each ``executing{node}`` starts that node; it runs until the next ``executing`` (or the
prompt's end). A node is *model load* when its class is a loader, *sampling* when it reports
``progress`` steps (or its class is a sampler), *decode* for VAE decoding, otherwise *other*.
Queue wait is from submission to ``execution_start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PHASES", "PromptTimeline"]

PHASES = ("queue_wait", "model_load", "sampling", "decode", "other")
_END_TYPES = ("execution_success", "execution_error", "execution_interrupted")


@dataclass
class PromptTimeline:
    """Feed events with :meth:`feed`; read :attr:`phases` once :attr:`done`."""

    prompt_id: str | None = None
    node_types: Mapping[str, str] = field(default_factory=dict)
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    node_seconds: dict[str, float] = field(default_factory=dict)
    sampling_nodes: set[str] = field(default_factory=set)
    _current: str | None = None
    _current_since: float = 0.0

    @classmethod
    def for_prompt(cls, prompt_id: str | None, prompt: Mapping[str, Any]) -> PromptTimeline:
        """A timeline that knows each node's class from the API-format ``prompt``."""
        types = {
            str(node_id): str(node.get("class_type", ""))
            for node_id, node in prompt.items()
            if isinstance(node, Mapping)
        }
        return cls(prompt_id=prompt_id, node_types=types)

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    def submitted(self, t: float) -> None:
        self.submitted_at = t

    def _close_node(self, t: float) -> None:
        if self._current is not None:
            spent = max(0.0, t - self._current_since)
            self.node_seconds[self._current] = self.node_seconds.get(self._current, 0.0) + spent
            self._current = None

    def feed(self, t: float, event_type: str, data: Mapping[str, Any]) -> None:
        """One WebSocket message (``type``, ``data``) received at time ``t`` (seconds)."""
        pid = data.get("prompt_id")
        if self.prompt_id is not None and pid is not None and pid != self.prompt_id:
            return
        if self.prompt_id is None and pid is not None and event_type == "execution_start":
            self.prompt_id = str(pid)
        if event_type == "execution_start":
            self.started_at = t
        elif event_type == "executing":
            self._close_node(t)
            node = data.get("node")
            if node is None:
                if self.ended_at is None and self.started_at is not None:
                    self.ended_at = t
                    self.outcome = self.outcome or "success"
            else:
                self._current, self._current_since = str(node), t
        elif event_type == "progress":
            node = data.get("node")
            if node is not None:
                self.sampling_nodes.add(str(node))
        elif event_type in _END_TYPES:
            self._close_node(t)
            self.ended_at = t
            self.outcome = event_type.removeprefix("execution_")

    def _phase_of(self, node: str) -> str:
        kind = self.node_types.get(node, "")
        if node in self.sampling_nodes or "Sampler" in kind:
            return "sampling"
        if "Loader" in kind:
            return "model_load"
        if kind.startswith("VAEDecode"):
            return "decode"
        return "other"

    @property
    def phases(self) -> dict[str, float]:
        """Seconds per phase (:data:`PHASES`) plus ``total`` (submission or start to end)."""
        out = dict.fromkeys(PHASES, 0.0)
        if self.submitted_at is not None and self.started_at is not None:
            out["queue_wait"] = max(0.0, self.started_at - self.submitted_at)
        for node, seconds in self.node_seconds.items():
            out[self._phase_of(node)] += seconds
        begin = self.submitted_at if self.submitted_at is not None else self.started_at
        if begin is not None and self.ended_at is not None:
            out["total"] = max(0.0, self.ended_at - begin)
        return out
