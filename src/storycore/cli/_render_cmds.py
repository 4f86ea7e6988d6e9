"""``storycore generate-images``: render the board with progress bars and a summary."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command

JSON_OPTION = typer.Option(False, "--json", help="Stream one JSON event per line.")
PROJECT_OPTION = typer.Option(Path("."), "--project", "-p", help="The project folder.")
SHOTS_OPTION = typer.Option(
    None, "--shots", help="Only these shot ids (repeat, or comma-separate)."
)
BACKEND_OPTION = typer.Option(None, "--backend", help="ComfyUI server URL (repeat for several).")
MOCK_OPTION = typer.Option(False, "--mock", help="Render placeholders with the emulator.")
FALLBACK_OPTION = typer.Option(
    None, "--fallback", help="When no server answers: 'mock' (default) or 'fail'."
)
FORCE_OPTION = typer.Option(False, "--force", help="Render again even if unchanged.")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Plan only; submit nothing.")


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
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Render every panel of the storyboard through ComfyUI (resumable)."""
        from storycore.engine import ImageEngine, RenderRequest
        from storycore.errors import ConfigError

        if fallback not in (None, "mock", "fail"):
            raise ConfigError(
                f"--fallback must be 'mock' or 'fail', not {fallback!r}", where="--fallback"
            )
        out = Output(json_out)
        resolved = cli_settings(
            project if project.is_dir() else None, cli={"render.fallback": fallback}
        )
        selected = tuple(s.strip() for item in shots or [] for s in item.split(",") if s.strip())
        request = RenderRequest(
            project=project,
            shots=selected,
            backends=tuple(backend or ()),
            mock=mock,
            fallback=fallback,  # type: ignore[arg-type]
            force=force,
            dry_run=dry_run,
        )
        view = _JsonView(out) if json_out else _RichView(out)
        engine = ImageEngine(resolved.settings, on_event=view.handle)
        summary = asyncio.run(_run_with_signals(engine, request, view))
        view.close()
        if json_out:
            out.json({"event": "summary", "ok": summary.exit_code == 0, **summary.to_dict()})
        else:
            _print_summary(out, summary)
        code = summary.exit_code
        if mock and code == 9 and not summary.failed:
            code = 0  # placeholders were asked for
        raise typer.Exit(code)


async def _run_with_signals(engine: Any, request: Any, view: Any) -> Any:
    """Ctrl-C once: stop submitting; twice: cancel running prompts. Handlers only set flags."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            engine.request_stop()
        else:
            engine.request_cancel()

    installed: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: plain handler, thread-safe wake
            previous[sig] = signal.signal(sig, lambda *_: loop.call_soon_threadsafe(on_interrupt))
    try:
        return await engine.render(request)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _JsonView:
    def __init__(self, out: Output) -> None:
        self.out = out

    def handle(self, event: Any) -> None:
        from storycore.engine import PanelProgress, event_to_dict

        if isinstance(event, PanelProgress) and event.step is None:
            return
        self.out.json(event_to_dict(event))

    def close(self) -> None:
        return None


class _RichView:
    """Overall bar with ETA, one bar per running panel, and a line per notable event."""

    def __init__(self, out: Output) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.out = out
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out.console,
            transient=True,
            disable=not out.console.is_terminal,
        )
        self.overall: Any = None
        self.panels: dict[str, Any] = {}
        self.started = False

    def handle(self, event: Any) -> None:
        from rich.markup import escape

        from storycore import engine as e

        if isinstance(event, e.RunStarted):
            self.progress.start()
            self.started = True
            kind = "MOCK (placeholders)" if event.mock else ", ".join(event.backends)
            self.out.info(
                f"Rendering {event.to_render} of {event.total} panels of {event.project} on {kind}"
            )
            self.overall = self.progress.add_task("panels", total=max(event.to_render, 1))
        elif isinstance(event, e.Notice):
            style = {"info": "", "warning": "bold yellow", "error": "bold red"}[event.level]
            text = escape(event.text)
            self.out.console.print(f"[{style}]{text}[/]" if style else text)
        elif isinstance(event, e.BackendChanged):
            detail = f" ({escape(event.detail)})" if event.detail else ""
            self.out.console.print(f"backend {escape(event.url)}: {event.state}{detail}")
        elif isinstance(event, e.PanelSubmitted):
            self._panel_task(event.shot_id)
        elif isinstance(event, e.PanelProgress):
            task = self._panel_task(event.shot_id)
            self.progress.update(task, completed=int(event.fraction * 100))
        elif isinstance(event, e.PanelDone):
            self._finish_panel(event.shot_id)
            badge = " [yellow]PLACEHOLDER[/]" if event.placeholder else ""
            self.out.console.print(
                f"[green]done[/] {event.shot_id} -> {escape(event.path)} "
                f"({event.seconds:.1f} s){badge}"
            )
        elif isinstance(event, e.PanelSkipped):
            self.out.console.print(f"[dim]skip[/] {event.shot_id}: {escape(event.reason)}")
        elif isinstance(event, e.PanelFailed):
            if not event.will_retry:
                self._finish_panel(event.shot_id)
            label = "[yellow]retry[/]" if event.will_retry else "[red]failed[/]"
            where = f" ({escape(event.where)})" if event.where else ""
            self.out.console.print(f"{label} {event.shot_id}{where}: {escape(event.error)}")

    def _panel_task(self, shot_id: str) -> Any:
        if shot_id not in self.panels:
            self.panels[shot_id] = self.progress.add_task(f"  {shot_id}", total=100)
        return self.panels[shot_id]

    def _finish_panel(self, shot_id: str) -> None:
        task = self.panels.pop(shot_id, None)
        if task is not None:
            self.progress.remove_task(task)
        if self.overall is not None:
            self.progress.advance(self.overall)

    def close(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self.progress.stop()


def _print_summary(out: Output, summary: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    counts = summary.counts
    table = Table("shot", "status", "time", "file / error", box=None, pad_edge=False)
    for o in summary.outcomes:
        time_text = f"{o.seconds:.1f} s" if o.seconds is not None else ""
        detail = o.path or o.error or ""
        table.add_row(o.shot_id, o.status, time_text, escape(detail))
    out.console.print(table)
    mean = summary.mean_panel_seconds
    out.info(
        f"{counts['rendered']} rendered, {counts['skipped']} skipped (cached), "
        f"{counts['failed']} failed, {counts['placeholder']} placeholders"
        + (f", {counts['stopped']} not started" if counts["stopped"] else "")
        + f" in {summary.elapsed:.1f} s"
        + (f" ({mean:.1f} s per panel)" if mean else "")
    )
    out.info(f"images: {summary.project / 'assets' / 'images' / 'generated'}")
    if summary.mock and counts["placeholder"]:
        out.warn(
            "these are PLACEHOLDER frames from the built-in emulator, not real renders; start "
            "ComfyUI and run again to replace them (exit code 9)"
        )
