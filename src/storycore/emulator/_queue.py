"""The prompt queue (a heap, like ComfyUI's) and the in-memory history."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

from ._ws import SocketHub

__all__ = ["PromptQueue", "QueueItem"]

QueueItem = list[Any]  # [number, prompt_id, prompt, extra_data, outputs_to_execute]


class PromptQueue:
    """Pending prompts in heap order, running prompts, and the history (oldest first).

    Every change of the queue broadcasts ``status`` with ``queue_remaining`` (pending + running).
    """

    def __init__(self, hub: SocketHub, max_history: int) -> None:
        self.hub = hub
        self.max_history = max_history
        self.number = 0
        self._heap: list[tuple[Any, str, int, QueueItem]] = []
        self._seq = 0
        self.running: dict[int, QueueItem] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()

    # ---- queue ---------------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._heap) + len(self.running)}}

    def _status(self) -> None:
        self.hub.send("status", {"status": self.queue_info()}, None)

    def put(self, item: QueueItem) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (item[0], str(item[1]), self._seq, item))
        self._status()
        self._wake.set()

    def queue_snapshot(self) -> tuple[list[QueueItem], list[QueueItem]]:
        return list(self.running.values()), [entry[3] for entry in self._heap]

    def delete_pending(self, prompt_id: str) -> bool:
        for i, entry in enumerate(self._heap):
            if entry[1] == prompt_id:
                self._heap.pop(i)
                heapq.heapify(self._heap)
                self._status()
                return True
        return False

    def wipe_queue(self) -> None:
        self._heap = []
        self._status()

    def reset(self) -> None:
        """Forget queue, history and cache (a process restart)."""
        self._heap = []
        self.running.clear()
        self.history.clear()
        self.number = 0

    # ---- history -------------------------------------------------------------------------
    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        for i, (key, entry) in enumerate(self.history.items()):
            if i >= offset:
                out[key] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def store_history(self, prompt_id: str, entry: dict[str, Any]) -> None:
        """Write (or overwrite, keeping its place) one entry; the oldest goes past the limit."""
        if prompt_id not in self.history and len(self.history) >= self.max_history:
            self.history.pop(next(iter(self.history)))
        self.history[prompt_id] = entry
