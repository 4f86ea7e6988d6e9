"""The review server's own renders: one at a time, an :class:`~storycore.engine.ImageEngine` in
the server's event loop.

The page asks for a render (new takes of the selected shots, or of the shots that need one,
with a profile); the runner starts the engine as a task and says what it is doing
(``idle`` / ``running`` / ``stopping``) to whoever listens (the SSE streams). Progress is not
the runner's business: the engine writes ``.storycore/live.json`` as it renders, and the page
learns of it through the board feed, whoever renders.

Stop is the first Ctrl-C of ``generate-images`` (``request_stop``: submit no more, let the
running panels finish, bounded by ``comfyui.graceful_shutdown``); cancel is the second
(``request_cancel``: withdraw the running prompts on their servers, then save).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from storycore.errors import StoryCoreError

__all__ = ["RenderAsk", "RenderRunner", "RunnerBusy"]

_log = logging.getLogger("storycore.review")

State = Literal["idle", "running", "stopping"]
MAX_NEW_TAKES = 100  # the engine's own bound on takes of one panel in one run


class RunnerBusy(StoryCoreError):
    """A render is already running (the page answers 409)."""

    exit_code = 3
    kind = "project"


@dataclass(frozen=True)
class RenderAsk:
    """What the page asked to render. ``shots`` empty: every shot."""

    shots: tuple[str, ...] = ()
    profile: str | None = None
    new_takes: int = 0
    rejected: bool = False


def _request_kwargs(fields: Sequence[str], wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` without the fields this engine's RenderRequest does not have (yet)."""
    dropped = [k for k, v in wanted.items() if k not in fields and v not in (None, 0, False)]
    if dropped:
        _log.warning("review: this engine has no %s; rendering without them", ", ".join(dropped))
    return {k: v for k, v in wanted.items() if k in fields}


class RenderRunner:
    """Runs the page's renders of ``root`` (one at a time) and tells ``on_state`` each change
    as a ``{"type": "render", ...}`` message."""

    def __init__(
        self,
        root: Path,
        settings: Any,
        *,
        backends: Sequence[str] = (),
        mock: bool = False,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.root = root
        self.settings = settings
        self.backends = tuple(backends)
        self.mock = mock
        self.on_state = on_state
        self.state: State = "idle"
        self.ask: RenderAsk | None = None
        self.summary: dict[str, Any] | None = None
        self._engine: Any = None
        self._task: asyncio.Task[None] | None = None
        self.interrupted = False  # a render was stopped by the server's own shutdown

    # ------------------------------------------------------------------ what it says
    def message(self) -> dict[str, Any]:
        """The runner's state as the page reads it (``/api/meta``'s ``render``; SSE)."""
        ask = self.ask
        data: dict[str, Any] = {
            "type": "render",
            "state": self.state,
            "profile": ask.profile if ask else None,
            "shots": list(ask.shots) if ask else [],
        }
        if self.summary is not None:
            data["summary"] = self.summary
        return data

    def _changed(self) -> None:
        if self.on_state is not None:
            try:
                self.on_state(self.message())
            except Exception:  # a listener's bug must not end a render
                _log.exception("review: a render listener failed")

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, ask: RenderAsk) -> None:
        """Start rendering ``ask`` now; :class:`RunnerBusy` when a render runs."""
        if self.running:
            raise RunnerBusy(
                "a render started from this page is still running",
                hint="stop or cancel it first, or wait until it ends",
            )
        from storycore.engine import ImageEngine, RenderRequest

        fields = [f.name for f in dataclasses.fields(RenderRequest)]
        kwargs = _request_kwargs(
            fields,
            {
                "profile": ask.profile,
                "new_takes": ask.new_takes,
                "rejected": ask.rejected,
            },
        )
        request = RenderRequest(
            project=self.root,
            shots=ask.shots,
            backends=self.backends,
            mock=self.mock,
            **kwargs,
        )
        self._engine = ImageEngine(self.settings)
        self.ask, self.summary, self.state = ask, None, "running"
        self._task = asyncio.create_task(self._run(self._engine, request), name="review-render")
        self._changed()

    async def _run(self, engine: Any, request: Any) -> None:
        started = time.monotonic()
        summary: dict[str, Any]
        try:
            result = await engine.render(request)
        except asyncio.CancelledError:
            summary = {"ok": False, "error": "the render was cut short (the server shut down)"}
            self._finish(summary, started)
            raise
        except StoryCoreError as exc:
            summary = {"ok": False, "error": exc.paragraph(), "exit_code": exc.exit_code}
        except Exception as exc:  # a bug in a render must not take the page down
            _log.exception("review: the render failed")
            summary = {"ok": False, "error": f"the render failed: {type(exc).__name__}"}
        else:
            counts = dict(result.counts)
            summary = {
                "ok": not result.failed and not result.stopped,
                "counts": counts,
                "stopped": bool(result.stopped),
                "failed": [o.shot_id for o in result.failed][:100],
            }
        self._finish(summary, started)

    def _finish(self, summary: dict[str, Any], started: float) -> None:
        summary["seconds"] = round(time.monotonic() - started, 2)
        self.summary, self.state, self._engine = summary, "idle", None
        self._changed()

    def stop(self) -> bool:
        """Submit no more panels; the running ones finish. False when nothing runs."""
        if not self.running or self._engine is None:
            return False
        self._engine.request_stop()
        if self.state != "stopping":
            self.state = "stopping"
            self._changed()
        return True

    def cancel(self) -> bool:
        """Withdraw the running panels on their servers too. False when nothing runs."""
        if not self.running or self._engine is None:
            return False
        self._engine.request_cancel()
        if self.state != "stopping":
            self.state = "stopping"
            self._changed()
        return True

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the render to end; True when none runs any more."""
        task = self._task
        if task is None or task.done():
            return True
        await asyncio.wait({task}, timeout=max(0.0, seconds))
        return task.done()

    async def shutdown(self, stop_grace: float, cancel_grace: float = 2.0) -> None:
        """End any render within about ``stop_grace + cancel_grace`` seconds: stop, then
        cancel, then cut the task short (the journal lets the next run resume)."""
        if not self.running:
            return
        self.interrupted = True
        self.stop()
        if await self.wait(stop_grace):
            return
        self.cancel()
        if await self.wait(cancel_grace):
            return
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
