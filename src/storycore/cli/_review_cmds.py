"""``storycore review``: the board as a live web page (:class:`storycore.review.ReviewServer`).

The first line on stdout is ``Review page: URL`` (with ``?token=...`` when the bind is not
loopback), flushed at once, so a script or a test reads the port of ``--port 0`` from it.

Ctrl-C (or SIGTERM), as ``generate-images`` handles it: the signal handler only counts the
press. The first press shuts the server down, bounded: a render started from the page is
stopped (its running panels finish, at most ``comfyui.graceful_shutdown``, 30 s at most),
then cancelled; the event streams, the feed and the site close. A second press cancels the
render at once; a third leaves now (the journal lets the next run resume). Exit 0, or 130
when a render of the page was cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command, shown
from storycore.errors import EXIT_INTERRUPTED

PROJECT_OPTION = typer.Option(Path("."), "--project", "-p", help="The project folder.")
HOST_OPTION = typer.Option(
    "127.0.0.1",
    "--host",
    help="Address to listen on (any other than loopback needs the printed token).",
)
PORT_OPTION = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one).")
OPEN_OPTION = typer.Option(True, "--open/--no-open", help="Open the page in a browser.")
BACKEND_OPTION = typer.Option(
    None, "--backend", help="ComfyUI server URL for the page's renders (repeat for several)."
)
MOCK_OPTION = typer.Option(False, "--mock", help="The page's renders are emulator placeholders.")
_CLOSE_BOUND_S = 40.0  # the whole shutdown, whatever happens


def register(app: typer.Typer) -> None:
    """Add ``review`` to ``app``."""

    @command(app, "review")
    def review(
        project: Path = PROJECT_OPTION,
        host: str = HOST_OPTION,
        port: int = PORT_OPTION,
        open_browser: bool = OPEN_OPTION,
        backend: list[str] | None = BACKEND_OPTION,
        mock: bool = MOCK_OPTION,
    ) -> None:
        """Serve the board as a live page: pick, approve, reject, comment, edit and render."""
        from storycore.review import ReviewServer

        out = Output(False)
        resolved = cli_settings(project if project.is_dir() else None)
        server = ReviewServer(
            project,
            resolved.settings,
            host=host,
            port=port,
            backends=tuple(backend or ()),
            mock=mock,
        )
        code = asyncio.run(_serve(server, out, open_browser))
        raise typer.Exit(code)


async def _serve(server: Any, out: Output, open_browser: bool) -> int:
    from storycore.cli._render_cmds import _first_of, _Presses, _signals_call

    presses = _Presses()
    with _signals_call(presses.press):
        await server.start()
        try:
            out.data(f"Review page: {shown(server.page_url)}")
            sys.stdout.flush()
            out.info(f"[dim]serving {shown(server.root)}; Ctrl-C to stop[/]")
            if open_browser:
                await _open(server.page_url)
            await presses.pressed.wait()
        finally:
            out.info("[dim]stopping the review server…[/]")
            closing = asyncio.create_task(server.close())
            seen = presses.count
            async with asyncio.timeout(_CLOSE_BOUND_S):
                while not closing.done():
                    presses.pressed.clear()
                    await _first_of(closing, presses)
                    if presses.count > seen:
                        seen = presses.count
                        if seen == 2:
                            server.runner.cancel()
                        else:
                            _leave_now(out)
            closing.result()
    if server.render_interrupted:
        out.err_console.print(
            "[bold yellow]interrupted (Ctrl-C)[/] the page's render was stopped; the next "
            "render resumes from the journal"
        )
        return EXIT_INTERRUPTED
    return 0


async def _open(url: str) -> None:
    import webbrowser

    with contextlib.suppress(Exception):
        await asyncio.to_thread(webbrowser.open, url)


def _leave_now(out: Output) -> None:
    with contextlib.suppress(Exception):
        out.err_console.print("[bold yellow]interrupted (Ctrl-C)[/] again: exiting now")
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)
