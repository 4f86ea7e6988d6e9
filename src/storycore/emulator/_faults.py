"""Fault injection for tests and benchmarks (``Emulator.faults``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._executor import Executor
    from ._ws import SocketHub

__all__ = ["FaultController"]


@dataclass
class _RouteFault:
    method: str
    path: str
    status: int
    remaining: int
    body: str


def _normalize(path: str) -> str:
    path = path.split("?", 1)[0]
    if path == "/api" or path.startswith("/api/"):
        path = path[4:] or "/"
    return path


class FaultController:
    """Break the emulator on purpose, in ways a real ComfyUI breaks.

    * :meth:`drop_websockets` aborts every open WebSocket (no close frame), like a network cut.
    * :meth:`stall_websockets` holds every outgoing WebSocket message for some seconds; they
      arrive afterwards, in order (a congested link or a frozen server loop).
    * :meth:`fail_route` makes the next ``times`` requests for ``method path`` (``/api`` prefix
      ignored; a path ending in ``*`` matches by prefix; method ``*`` matches any) answer
      ``status`` with a plain-text body, without running the real handler.
    * :meth:`forget_history` empties the history, or drops only the given prompt ids (a server
      that lost its memory).
    * :meth:`fail_node` makes the next ``times`` executions of a node class (or node id) raise,
      so the prompt ends with a real ``execution_error``.
    * :meth:`crash_after_prompts` makes the process exit hard (``os._exit``) once the n-th
      prompt from now has started executing its first node. Only honoured when the emulator
      runs as its own process (``run_emulator``); in-process it raises ``RuntimeError``.
    * :meth:`clear` removes every pending route fault and crash.
    """

    def __init__(self, hub: SocketHub, executor: Executor, *, allow_crash: bool) -> None:
        self._hub = hub
        self._executor = executor
        self._allow_crash = allow_crash
        self._routes: list[_RouteFault] = []
        self._crash_countdown: int | None = None
        self._node_faults: list[list[Any]] = []

    def _rebind(self, hub: SocketHub, executor: Executor) -> None:
        self._hub = hub
        self._executor = executor

    def drop_websockets(self) -> int:
        """Abort every open WebSocket; returns how many were cut."""
        return self._hub.drop_all()

    def stall_websockets(self, seconds: float) -> None:
        """Hold all outgoing WebSocket messages for ``seconds``."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._hub.stall(seconds)

    def fail_route(
        self, method: str, path: str, status: int, times: int = 1, body: str = ""
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``."""
        if times < 1:
            raise ValueError("times must be >= 1")
        text = body or f"{status}: injected fault"
        self._routes.append(_RouteFault(method.upper(), _normalize(path), status, times, text))

    def forget_history(self, prompt_ids: Iterable[str] | None = None) -> None:
        """Drop history entries: all of them, or only ``prompt_ids`` (the queue is kept)."""
        if prompt_ids is None:
            self._executor.history.clear()
            return
        for pid in prompt_ids:
            self._executor.history.pop(pid, None)

    def fail_node(self, target: str, message: str = "injected failure", times: int = 1) -> None:
        """Make the next ``times`` runs of class ``target`` (or node id ``target``) raise
        ``RuntimeError(message)``."""
        if times < 1:
            raise ValueError("times must be >= 1")
        self._node_faults.append([target, message, times])

    def crash_after_prompts(self, n: int) -> None:
        """Exit the process hard while the n-th prompt from now runs (process mode only)."""
        if not self._allow_crash:
            raise RuntimeError("crash faults need the emulator to run as its own process")
        if n < 1:
            raise ValueError("n must be >= 1")
        self._crash_countdown = n

    def clear(self) -> None:
        self._routes.clear()
        self._node_faults.clear()
        self._crash_countdown = None

    # ---- hooks used by the server and the executor ------------------------------------------
    def take_route_fault(self, method: str, path: str) -> tuple[int, str] | None:
        norm = _normalize(path)
        for fault in self._routes:
            if fault.method not in ("*", method.upper()):
                continue
            if fault.path.endswith("*"):
                if not norm.startswith(fault.path[:-1]):
                    continue
            elif fault.path != norm:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._routes.remove(fault)
            return fault.status, fault.body
        return None

    def on_prompt_start(self, prompt_id: str) -> None:
        if self._crash_countdown is not None:
            self._crash_countdown -= 1

    def on_node_start(self, prompt_id: str, node_id: str, class_type: str) -> None:
        if self._crash_countdown is not None and self._crash_countdown <= 0:
            os._exit(17)
        for fault in self._node_faults:
            if fault[0] in (class_type, node_id):
                fault[2] -= 1
                if fault[2] <= 0:
                    self._node_faults.remove(fault)
                raise RuntimeError(fault[1])
