"""Assembles the Typer application from one module per command group."""

from __future__ import annotations

import typer

__all__ = ["build_app"]


def build_app() -> typer.Typer:
    """Build the ``storycore`` app. Each command module adds its commands through ``register``."""
    from storycore.cli import (
        _assets_cmds,
        _board_cmds,
        _comfyui_cmds,
        _config_cmds,
        _doctor_cmds,
        _project_cmds,
        _render_cmds,
        _workflow_cmds,
    )

    app = typer.Typer(
        name="storycore",
        help="Render a StoryCore storyboard through ComfyUI.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def _root() -> None:
        """StoryCore: render a storyboard through ComfyUI, nothing lost, nothing rendered twice."""

    for module in (
        _project_cmds,
        _config_cmds,
        _comfyui_cmds,
        _workflow_cmds,
        _render_cmds,
        _doctor_cmds,
        _board_cmds,
        _assets_cmds,
    ):
        module.register(app)
    return app
