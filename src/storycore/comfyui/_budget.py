"""What the tracker keeps of a server's WebSocket frames: bounded per prompt, whatever it sends.

A server decides what it sends; the tracker decides what it keeps. Per followed prompt
(:class:`PromptBudget`): the node ids of its graph, and at most :data:`MAX_EXTRA_NODES` others
(ComfyUI's node expansion runs nodes the submitted graph does not name), so ``executed``,
``progress_state`` or ``execution_cached`` frames with ever-new node ids add nothing past that;
the ``executed`` frames kept add up to at most :data:`MAX_OUTPUT_BYTES` (the outputs of a
dropped frame are read from ``/history`` instead, which has its own size limit); a preview image
is kept only up to :data:`MAX_PREVIEW_BYTES`. Frames for prompts nobody follows yet
(:class:`OrphanFrames`) are kept for a few prompts and a few MiB in all.

Frame sizes are the sizes on the wire, which bound what their parsed events cost.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from storycore.comfyui.events import (
    CachedNodes,
    Event,
    NodeExecuted,
    NodeExecuting,
    NodeProgress,
    PreviewImage,
    ProgressState,
)

__all__ = [
    "MAX_EXTRA_NODES",
    "MAX_OUTPUT_BYTES",
    "MAX_PREVIEW_BYTES",
    "OrphanFrames",
    "PromptBudget",
]

_log = logging.getLogger("storycore.comfyui.tracker")

MiB = 1 << 20
MAX_EXTRA_NODES = 256
"""Node ids a prompt may report beyond those of its graph."""
MAX_OUTPUT_BYTES = 1 * MiB
"""``executed`` frames kept per prompt, in all, on the wire (a SaveImage frame is a few hundred
bytes; parsed, a hostile frame of empty lists costs twenty times its size)."""
MAX_PREVIEW_BYTES = 8 * MiB
"""The largest preview image kept (ComfyUI's previews are small JPEGs)."""
ORPHAN_PROMPTS = 64
ORPHAN_EVENTS = 512
ORPHAN_BYTES = 4 * MiB
"""Frames kept for prompts not followed yet (yet to be watched, or ids the server chose)."""


class PromptBudget:
    """The share of one prompt's frames the tracker keeps. ``in_graph(node_id)`` says whether a
    node is one of the prompt's graph (those are always kept)."""

    def __init__(self, prompt_id: str, in_graph: Callable[[str], bool]) -> None:
        self.prompt_id = prompt_id
        self._in_graph = in_graph
        self._extra: set[str] = set()
        self.output_bytes = 0
        self.dropped = 0

    def admit(self, event: Event, size: int) -> Event | None:
        """``event`` as far as it fits (node lists trimmed), or ``None`` to drop it."""
        if isinstance(event, NodeExecuted):
            if self._node(event.node_id) and self.output_bytes + size <= MAX_OUTPUT_BYTES:
                self.output_bytes += size
                return event
        elif isinstance(event, NodeExecuting | NodeProgress):
            if event.node_id is None or self._node(event.node_id):
                return event
        elif isinstance(event, CachedNodes):
            nodes = tuple(n for n in event.nodes if self._node(n))
            if len(nodes) < len(event.nodes):
                self._drop(event)
                return CachedNodes(event.prompt_id, nodes)
            return event
        elif isinstance(event, ProgressState):
            states = tuple(s for s in event.nodes if self._node(s.node_id))
            if len(states) < len(event.nodes):
                self._drop(event)
                return ProgressState(event.prompt_id, states)
            return event
        elif not isinstance(event, PreviewImage) or len(event.image) <= MAX_PREVIEW_BYTES:
            return event
        self._drop(event)
        return None

    def _node(self, node_id: str) -> bool:
        if node_id in self._extra or self._in_graph(node_id):
            return True
        if len(self._extra) >= MAX_EXTRA_NODES:
            return False
        self._extra.add(node_id)
        return True

    def _drop(self, event: Event) -> None:
        self.dropped += 1
        if self.dropped == 1:
            _log.warning(
                "prompt %s: the server sends more than StoryCore keeps (%s frames with node ids "
                "beyond the graph, or outputs past %d MiB); the rest is read from /history",
                self.prompt_id,
                type(event).__name__,
                MAX_OUTPUT_BYTES // MiB,
            )


class OrphanFrames:
    """Frames for prompts nobody follows yet, oldest prompts forgotten first."""

    def __init__(self) -> None:
        self._frames: OrderedDict[str, list[tuple[Event, int]]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, prompt_id: str, event: Event, size: int) -> None:
        if size > ORPHAN_BYTES // 8:
            return  # a big frame nobody asked for: /history has it if it matters
        frames = self._frames.setdefault(prompt_id, [])
        if len(frames) >= ORPHAN_EVENTS:
            return
        frames.append((event, size))
        self._bytes += size
        while self._frames and (len(self._frames) > ORPHAN_PROMPTS or self._bytes > ORPHAN_BYTES):
            _old, dropped = self._frames.popitem(last=False)
            self._bytes -= sum(n for _e, n in dropped)

    def pop(self, prompt_id: str) -> list[tuple[Event, int]]:
        frames = self._frames.pop(prompt_id, [])
        self._bytes -= sum(n for _e, n in frames)
        return frames
