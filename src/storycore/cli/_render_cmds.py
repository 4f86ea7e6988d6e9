"""``storycore generate-images``: render the board (the view is in :mod:`._render_view`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command
from storycore.cli._render_view import JsonView, RichView, exit_code_for, print_plan, print_summary

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
        from storycore.engine import ImageEngine, RenderRequest, desktop_port_for
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
        )
        view = JsonView(out) if json_out else RichView(out)
        engine = ImageEngine(resolved.settings, on_event=view.handle)
        summary = asyncio.run(_run_with_signals(engine, request, view))
        view.close()
        code = exit_code_for(summary, asked_for_mock=mock)
        if json_out:
            out.json({"event": "summary", "ok": code == 0, **summary.to_dict(), "exit_code": code})
        else:
            if isinstance(view, RichView) and view.planned:
                print_plan(out, view.planned)
            print_summary(out, summary, code, asked_for_mock=mock)
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
