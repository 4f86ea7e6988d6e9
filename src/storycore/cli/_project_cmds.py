"""``storycore init``, ``storycore validate`` and ``storycore version``."""

from __future__ import annotations

import typer

from storycore.cli._common import Output


def register(app: typer.Typer) -> None:
    """Add the project commands to ``app``."""

    @app.command("version")
    def version(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """Print the StoryCore version."""
        from storycore import __version__

        out = Output(json_out)
        if json_out:
            out.json({"ok": True, "version": __version__})
        else:
            out.info(f"storycore {__version__}")
