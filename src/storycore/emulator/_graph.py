"""Graph helpers: ComfyUI's execution order, cache signatures and the progress registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ExecutionList", "ProgressRegistry", "is_link", "signatures"]


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def signatures(
    prompt: dict[str, Any], is_changed: Callable[[str, dict[str, Any]], Any]
) -> dict[str, str]:
    """A structural cache key per node: class, literal inputs and the ancestors' keys.

    Like ComfyUI's input-signature cache, node ids do not take part, so the same sub-graph under
    other ids hits the same cache entries.
    """
    memo: dict[str, str] = {}
    visiting: set[str] = set()

    def sig(uid: str) -> str:
        if uid in memo:
            return memo[uid]
        if uid in visiting:
            raise ValueError(f"dependency cycle at node {uid}")
        visiting.add(uid)
        node = prompt[uid]
        inputs: dict[str, Any] = node.get("inputs", {})
        parts: list[Any] = [node["class_type"], is_changed(uid, node)]
        for name in sorted(inputs):
            value = inputs[name]
            if is_link(value) and value[0] in prompt:
                parts.append([name, "link", sig(value[0]), value[1]])
            else:
                parts.append([name, value])
        text = json.dumps(parts, sort_keys=True, default=str)
        memo[uid] = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        visiting.discard(uid)
        return memo[uid]

    for uid in prompt:
        sig(uid)
    return memo


class ExecutionList:
    """ComfyUI's topological staging with its "UX friendly" pick of the next node.

    ``is_cached`` nodes are not scheduled (their values come from the cache), except the
    requested output nodes themselves, which are staged so their cached UI is re-announced.
    """

    def __init__(
        self,
        prompt: dict[str, Any],
        is_output: Callable[[str], bool],
        is_cached: Callable[[str], bool],
    ) -> None:
        self._prompt = prompt
        self._is_output = is_output
        self._is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, bool]] = {}

    def add_node(self, unique_id: str) -> None:
        stack = [unique_id]
        links: list[tuple[str, str]] = []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid] = True
            self.block_count[uid] = 0
            self.blocking[uid] = {}
            for value in self._prompt[uid].get("inputs", {}).values():
                if is_link(value) and value[0] in self._prompt:
                    src = value[0]
                    if not self._is_cached(src):
                        stack.append(src)
                    links.append((src, uid))
        for src, dst in links:
            if self._is_cached(src):
                continue
            if dst not in self.blocking[src]:
                self.blocking[src][dst] = True
                self.block_count[dst] += 1

    def add_outputs(self, outputs: Iterable[str]) -> None:
        for uid in outputs:
            self.add_node(uid)

    def is_empty(self) -> bool:
        return not self.pending

    def next_node(self) -> str:
        ready = [uid for uid in self.pending if self.block_count[uid] == 0]
        if not ready:
            raise ValueError("dependency cycle: no node is ready to run")
        for uid in ready:
            if self._is_output(uid):
                return uid
        for uid in ready:
            if any(self._is_output(b) for b in self.blocking[uid]):
                return uid
        for uid in ready:
            for b in self.blocking[uid]:
                if any(self._is_output(b2) for b2 in self.blocking[b]):
                    return uid
        return ready[0]

    def complete(self, uid: str) -> None:
        self.pending.pop(uid, None)
        for dst in self.blocking.get(uid, {}):
            self.block_count[dst] -= 1


class ProgressRegistry:
    """Per-prompt node states, sent whole as ``progress_state`` on every change."""

    def __init__(self, prompt_id: str, send: Callable[[dict[str, Any]], None]) -> None:
        self.prompt_id = prompt_id
        self._send = send
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, uid: str) -> dict[str, Any]:
        entry = self.nodes.get(uid)
        if entry is None:
            entry = {
                "value": 0,
                "max": 1,
                "state": "pending",
                "node_id": uid,
                "prompt_id": self.prompt_id,
                "display_node_id": uid,
                "parent_node_id": None,
                "real_node_id": uid,
            }
            self.nodes[uid] = entry
        return entry

    def _publish(self) -> None:
        active = {uid: dict(e) for uid, e in self.nodes.items() if e["state"] != "pending"}
        self._send({"prompt_id": self.prompt_id, "nodes": active})

    def start(self, uid: str) -> None:
        entry = self._entry(uid)
        entry.update(state="running", value=0.0, max=1.0)
        self._publish()

    def update(self, uid: str, value: int, maximum: int) -> None:
        entry = self._entry(uid)
        entry.update(state="running", value=value, max=maximum)
        self._publish()

    def finish(self, uid: str) -> None:
        entry = self._entry(uid)
        entry["state"] = "finished"
        entry["value"] = entry["max"]
        self._publish()
