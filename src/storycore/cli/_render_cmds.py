"""``storycore generate-images``: render the board (the view is in :mod:`._render_view`).

Ctrl-C (or SIGTERM), as uvicorn handles it: the signal handler only counts the press and wakes
the run's supervisor (:func:`_run_with_signals`), which decides what the press means; the
original handlers are restored when the run ends.

* before the render began (loading, connecting, starting ComfyUI, the preflight's node lists):
  the first press ends the run at once, nothing was submitted (exit 130, one line);
* while panels render: the first press stops submitting and waits for the running panels
  (bounded by ``comfyui.graceful_shutdown``); the second cancels them on their servers and
  saves if that takes under :data:`_FORCE_GRACE_S`, else exits at once; the journal lets the
  next run resume either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer

from storycore.cli._common import Output, cli_settings, command
from storycore.cli._render_view import JsonView, RichView, exit_code_for, print_plan, print_summary
from storycore.errors import EXIT_INTERRUPTED

# After Ctrl-C before the render began: the bound on closing connections and releasing the lock.
_UNWIND_S = 5.0
# After a second Ctrl-C: the bound on cancelling the running prompts and saving.
_FORCE_GRACE_S = 2.0

JSON_OPTION = typer.Option(False, "--json", help="Stream one JSON event per line.")
PROJECT_OPTION = typer.Option(Path("."), "--project", "-p", help="The project folder.")
SHOTS_OPTION = typer.Option(
    None, "--shots", help="Only these shot ids (repeat, or comma-separate)."
)
BACKEND_OPTION = typer.Option(None, "--backend", help="ComfyUI server URL (repeat for several).")
MOCK_OPTION = typer.Option(False, "--mock", help="Render placeholders with the emulator.")
FALLBACK_OPTION = typer.Option(
    None,
    "--fallback",
    help="When no server answers: 'mock' renders placeholders, 'fail' exits 4 (default: "
    "placeholders only when no server was named).",
)
FORCE_OPTION = typer.Option(False, "--force", help="Render again even if unchanged.")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Plan only; submit nothing.")
PROFILE_OPTION = typer.Option(
    None,
    "--profile",
    help="A render profile whose values win over the shots' own: 'draft', 'final' or a "
    "[profiles.NAME] table of storycore.toml.",
)
TAKES_OPTION = typer.Option(
    None,
    "--takes",
    min=1,
    max=100,
    help="Takes 1..N of each panel, seeds seed, seed+1, ... (a rerun renders the missing ones; "
    "default: the profile's takes, else 1).",
)
NEW_TAKES_OPTION = typer.Option(
    0, "--new-takes", min=0, max=100, help="N more takes of each panel, after its last one."
)
APPROVED_OPTION = typer.Option(
    False,
    "--approved",
    help="Render each shot's approved take again, same seed, at the profile's settings "
    "(promote: --profile final --approved).",
)
REJECTED_OPTION = typer.Option(
    False, "--rejected", help="Only shots with no take or a rejected one: a new take each."
)


def register(app: typer.Typer) -> None:
    """Add ``generate-images`` to ``app``."""

    @command(app, "generate-images")
    def generate_images(
        project: Path = PROJECT_OPTION,
        shots: list[str] | None = SHOTS_OPTION,
        backend: list[str] | None = BACKEND_OPTION,
        mock: bool = MOCK_OPTION,
        fallback: str | None = FALLBACK_OPTION,
        force: bool = FORCE_OPTION,
        dry_run: bool = DRY_RUN_OPTION,
        profile: str | None = PROFILE_OPTION,
        takes: int | None = TAKES_OPTION,
        new_takes: int = NEW_TAKES_OPTION,
        approved: bool = APPROVED_OPTION,
        rejected: bool = REJECTED_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Render every panel of the storyboard through ComfyUI (resumable)."""
        from storycore.engine import ImageEngine, RenderRequest, desktop_port_for
        from storycore.errors import ConfigError

        if fallback not in (None, "mock", "fail"):
            raise ConfigError(
                f"--fallback must be 'mock' or 'fail', not {fallback!r}", where="--fallback"
            )
        if approved and (takes or new_takes or rejected):
            raise ConfigError(
                "--approved renders each shot's approved take again; it does not go with "
                "--takes, --new-takes or --rejected",
                where="--approved",
                hint="run the promote pass on its own: generate-images --profile final --approved",
            )
        out = Output(json_out)
        resolved = cli_settings(
            project if project.is_dir() else None, cli={"render.fallback": fallback}
        )
        selected = tuple(s.strip() for item in shots or [] for s in item.split(",") if s.strip())
        # A fallback the user wrote anywhere (flag, file, environment) counts as asked for;
        # the built-in default applies only when no server is named (see engine._connect).
        asked = resolved.source_of("render.fallback") != "default"
        request = RenderRequest(
            project=project,
            shots=selected,
            backends=tuple(backend or ()),
            mock=mock,
            fallback=resolved.settings.render.fallback if asked else None,
            desktop_port=desktop_port_for(resolved, backend or ()),
            force=force,
            dry_run=dry_run,
            profile=profile,
            takes=takes,
            new_takes=new_takes,
            approved=approved,
            rejected=rejected,
        )
        if profile:  # an unknown name stops here, before anything starts
            from storycore._profiles import resolve_profile

            resolve_profile(resolved.settings, profile)
        view = JsonView(out) if json_out else RichView(out)
        phase = _Phase(view.handle)
        engine = ImageEngine(resolved.settings, on_event=phase)
        try:
            summary = asyncio.run(_run_with_signals(engine, request, phase, out, view))
        except _Interrupted as stopped:
            view.close()
            _say_interrupted(out, f"while {stopped.doing}; nothing was submitted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        view.close()
        code = exit_code_for(summary, asked_for_mock=mock)
        if json_out:
            out.json({"event": "summary", "ok": code == 0, **summary.to_dict(), "exit_code": code})
        else:
            if isinstance(view, RichView) and view.planned:
                print_plan(out, view.planned)
            print_summary(out, summary, code, asked_for_mock=mock)
        raise typer.Exit(code)


class _Interrupted(Exception):
    """Ctrl-C ended the run before the render began."""

    def __init__(self, doing: str) -> None:
        super().__init__(doing)
        self.doing = doing


class _Phase:
    """Where the run is, read from its events on their way to the view: what Ctrl-C stops."""

    def __init__(self, sink: Callable[[Any], None]) -> None:
        self.sink = sink
        self.rendering = False
        self.doing = "loading the project and connecting to the servers"

    def __call__(self, event: Any) -> None:
        from storycore.engine import BackendChanged, RunStarted

        if isinstance(event, RunStarted):
            self.rendering = True
        elif isinstance(event, BackendChanged) and event.state in ("healthy", "mock"):
            self.doing = "reading the server's node lists and checking the panels (preflight)"
        self.sink(event)


class _Presses:
    """Ctrl-C presses: the signal handler only counts them and wakes the supervisor."""

    def __init__(self) -> None:
        self.count = 0
        self.pressed = asyncio.Event()

    def press(self) -> None:
        self.count += 1
        self.pressed.set()


@contextlib.contextmanager
def _signals_call(press: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``press`` (in the event loop) inside the block; the handlers that
    were there before (asyncio.run's own among them) are restored afterwards."""
    loop = asyncio.get_running_loop()
    original = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    installed: list[signal.Signals] = []
    for sig in original:
        try:
            loop.add_signal_handler(sig, press)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: plain handler, thread-safe wake
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(press))
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for sig, handler in original.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, handler)


async def _run_with_signals(
    engine: Any, request: Any, phase: _Phase, out: Output, view: Any
) -> Any:
    """Run the render as a task and decide what each Ctrl-C means (see the module docstring)."""
    presses = _Presses()
    with _signals_call(presses.press):
        task = asyncio.create_task(engine.render(request))
        handled = 0
        while not task.done():
            await _first_of(task, presses)
            presses.pressed.clear()
            if task.done() or presses.count == handled:
                continue
            handled = presses.count
            if handled == 1 and phase.rendering:
                engine.request_stop()  # the engine drains the running panels, bounded
                continue
            if not phase.rendering:
                # Nothing runs on a server yet: end the connect or preflight now.
                engine.request_stop()
                task.cancel()
                if not await _ended_within(task, presses, _UNWIND_S):
                    _exit_now(out, view, f"while {phase.doing}; nothing was submitted")
                if task.cancelled():
                    raise _Interrupted(phase.doing)
                break
            engine.request_cancel()  # a second press: cancel and save if quick, else leave now
            if not await _ended_within(task, presses, _FORCE_GRACE_S):
                _exit_now(
                    out,
                    view,
                    "again: exiting now without waiting for the running panels; the next run "
                    "resumes from the journal",
                )
        if task.cancelled():
            raise _Interrupted(phase.doing)
        return task.result()


async def _first_of(task: asyncio.Task[Any], presses: _Presses) -> None:
    """Wait until ``task`` ends or Ctrl-C is pressed."""
    waiter = asyncio.ensure_future(presses.pressed.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _ended_within(task: asyncio.Task[Any], presses: _Presses, seconds: float) -> bool:
    """Did ``task`` end within ``seconds``, with no further Ctrl-C meanwhile?"""
    before = presses.count
    presses.pressed.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while not task.done() and presses.count == before:
                await _first_of(task, presses)
                presses.pressed.clear()
    return task.done()


def _say_interrupted(out: Output, what: str) -> None:
    """The one line that says the run was interrupted (and a JSON event with ``--json``)."""
    if out.json_mode:
        out.json({"event": "interrupted", "ok": False, "exit_code": EXIT_INTERRUPTED})
    out.err_console.print(f"[bold yellow]interrupted (Ctrl-C)[/] {what}")


def _exit_now(out: Output, view: Any, what: str) -> NoReturn:
    """Leave at once, without waiting for tasks or worker threads: a journal line is durable
    before each prompt is submitted and every file is written atomically, so this loses no
    more than ``kill -9``, which a resumed run survives; the OS releases the project lock."""
    with contextlib.suppress(Exception):
        view.close()
    with contextlib.suppress(Exception):
        _say_interrupted(out, what)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)
