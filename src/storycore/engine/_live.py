"""Where a render stands, as one small file another process can watch: ``.storycore/live.json``.

The review page (``storycore review``) shows running panels with their sampler progress and
latest preview whoever renders: its own engine or ``generate-images`` in another terminal. Both
write the same file through :class:`LiveStatus`, an observer of the engine's events like
:class:`~storycore.engine._previews.PreviewStore`; the page's feed
(:class:`storycore.review.BoardFeed`) watches it with the OS's file notifications.

The file (version 1)::

    {"version": 1, "pid": 123, "run_id": "hex", "started": "iso", "updated": "iso",
     "running": true, "profile": "draft", "total": 7, "to_render": 5, "done": 2,
     "failed": 0, "skipped": 2,
     "panels": {"S01#2": {"shot_id": "S01", "take": 2, "state": "running", "fraction": 0.4,
                          "step": 8, "steps": 20, "backend": "http://...",
                          "preview": ".storycore/previews/S01_2-abc.jpg", "preview_count": 3}}}

Only running panels are listed (at most :attr:`LiveLimits.max_panels`; a 10,000-panel run
still writes a file of a few KB). It is written atomically (a temporary file renamed over it:
a reader never sees half of one, and a link planted at ``live.json`` is replaced, never written
through; a ``.storycore`` that leads out of the project is refused), off the event loop, at
most once per :attr:`LiveLimits.interval` (changes in between are coalesced, the newest state
always written), and a last time when the run ends with ``"running": false`` and no panels
(the file is kept: the page shows the run's counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from storycore._fsutil import atomic_write_bytes, json_bytes, mkdirs_inside
from storycore.engine._events import (
    EngineEvent,
    EventSink,
    PanelDone,
    PanelFailed,
    PanelPreview,
    PanelProgress,
    PanelSkipped,
    PanelSubmitted,
    RunStarted,
)
from storycore.errors import StoryCoreError
from storycore.panels import split_key

__all__ = ["LIVE_FILE", "LIVE_VERSION", "LiveLimits", "LiveStatus"]

_log = logging.getLogger("storycore.engine")

#: The live status file, relative to the project root.
LIVE_FILE = Path(".storycore") / "live.json"
LIVE_VERSION = 1
_MAX_TEXT = 500  # a backend URL or a shot id longer than this is cut (the file stays small)


@dataclass(frozen=True)
class LiveLimits:
    """How often the file is written, how many running panels it lists, and how long the end
    of a run waits for the last write."""

    interval: float = 0.25
    max_panels: int = 1000
    close_wait: float = 5.0


def _now_iso() -> str:
    from storycore.project import now_iso

    return now_iso()


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= _MAX_TEXT else text[:_MAX_TEXT]


class LiveStatus:
    """Writes ``<root>/.storycore/live.json`` while a render runs. ``observe`` is the engine's
    event sink: it updates the status, then passes every event on to ``sink``. Use it as an
    async context manager around the run (the end writes ``"running": false``)."""

    def __init__(
        self,
        root: Path,
        sink: EventSink | None = None,
        *,
        profile: str | None = None,
        limits: LiveLimits | None = None,
    ) -> None:
        self.root = Path(root)
        self.path = self.root / LIVE_FILE
        self.sink = sink
        self.limits = limits or LiveLimits()
        self.run_id = secrets.token_hex(8)
        self.started = _now_iso()
        self.running = True
        self.profile = profile
        self.total = 0
        self.to_render = 0
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.panels: dict[str, dict[str, Any]] = {}
        self.left_out = 0  # running panels not listed (past max_panels)
        self.writes = 0
        self._dirty = False
        self._last_write = float("-inf")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._disabled: str | None = None

    # ------------------------------------------------------------------ engine side
    def observe(self, event: EngineEvent) -> None:
        """Update the status from ``event`` (see that it is written soon), then pass it on."""
        if not self._closed:
            self._apply(event)
        if self.sink is not None:
            self.sink(event)

    def _apply(self, event: EngineEvent) -> None:
        if isinstance(event, RunStarted):
            self.total, self.to_render = event.total, event.to_render
            profile = getattr(event, "profile", None)  # when the engine's RunStarted names it
            if isinstance(profile, str):
                self.profile = profile
        elif isinstance(event, PanelSubmitted):
            panel = self._panel(event.shot_id, reset=True)
            if panel is not None:
                panel["backend"] = _cut(event.backend)
        elif isinstance(event, PanelProgress):
            panel = self._panel(event.shot_id)
            if panel is not None:
                panel["state"] = "running"
                panel["fraction"] = round(min(1.0, max(0.0, float(event.fraction))), 4)
                if event.step is not None:
                    panel["step"], panel["steps"] = event.step, event.steps
        elif isinstance(event, PanelPreview):
            panel = self._panel(event.shot_id)
            if panel is not None:
                panel["state"] = "running"
                panel["preview"] = _cut(event.path)
                panel["preview_count"] = event.count
        elif isinstance(event, PanelDone):
            self._forget(event.shot_id)
            self.done += 1
        elif isinstance(event, PanelFailed):
            self._forget(event.shot_id)  # a retry is listed again when it is submitted
            if not event.will_retry:
                self.failed += 1
        elif isinstance(event, PanelSkipped):
            self._forget(event.shot_id)
            self.skipped += 1
        else:
            return
        self._changed()

    def _panel(self, key: str, *, reset: bool = False) -> dict[str, Any] | None:
        panel = self.panels.get(key)
        if panel is not None and not reset:
            return panel
        if panel is None and len(self.panels) >= self.limits.max_panels:
            self.left_out += 1
            return None
        shot_id, take = split_key(key)  # "S01#3" -> ("S01", 3)
        panel = {
            "shot_id": _cut(shot_id),
            "take": take,
            "state": "submitted",
            "fraction": 0.0,
            "step": None,
            "steps": None,
            "backend": None,
            "preview": None,
            "preview_count": 0,
        }
        self.panels[_cut(key) or key] = panel
        return panel

    def _forget(self, key: str) -> None:
        if self.panels.pop(_cut(key) or key, None) is None and self.left_out:
            self.left_out -= 1

    def snapshot(self) -> dict[str, Any]:
        """The status as the file holds it (a copy: safe to hand to a worker thread)."""
        return {
            "version": LIVE_VERSION,
            "pid": os.getpid(),
            "run_id": self.run_id,
            "started": self.started,
            "updated": _now_iso(),
            "running": self.running,
            "profile": self.profile,
            "total": self.total,
            "to_render": self.to_render,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "panels": {key: dict(panel) for key, panel in self.panels.items()},
        }

    # ------------------------------------------------------------------ writing
    def _changed(self) -> None:
        self._dirty = True
        if self._disabled is not None:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())

    async def _writer(self) -> None:
        """Write the newest state, at most once per interval, until nothing changed since."""
        while self._dirty and self._disabled is None:
            wait = self._last_write + self.limits.interval - time.monotonic()
            if wait > 0 and not self._closed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()  # the end of the run cuts the wait short
            self._dirty = False
            data = self.snapshot()
            self._last_write = time.monotonic()
            try:
                await asyncio.to_thread(self._write, data)
            except (OSError, StoryCoreError) as exc:
                self._disable(exc)
                return
            self.writes += 1

    def _write(self, data: dict[str, Any]) -> None:
        mkdirs_inside(self.root, self.path.parent, what="state folder")
        atomic_write_bytes(self.path, json_bytes(data), durable=False, inside=self.root)

    def _disable(self, exc: BaseException) -> None:
        if self._disabled is None:
            self._disabled = str(exc)
            _log.warning("the live status (%s) is not written: %s", LIVE_FILE.as_posix(), exc)

    # ------------------------------------------------------------------ the run
    async def __aenter__(self) -> LiveStatus:
        self._changed()  # the page learns at once that a run started
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write the end of the run (``"running": false``, no panels), waiting (bounded) for a
        write in flight first."""
        if self._closed:
            return
        self._closed = True
        self.running = False
        self.panels.clear()
        self.left_out = 0
        self._dirty = True
        self._wake.set()
        if self._disabled is not None:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())
        task = self._task
        try:
            await asyncio.wait_for(asyncio.shield(task), self.limits.close_wait)
        except TimeoutError:
            task.cancel()
            _log.warning("the live status was not written within %.0f s", self.limits.close_wait)
