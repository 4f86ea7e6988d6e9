"""Assembles the Typer application from one module per command group."""

from __future__ import annotations

import typer

__all__ = ["build_app"]

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _print_version(value: bool) -> None:
    if value:
        from storycore import __version__

        typer.echo(f"storycore {__version__}")
        raise typer.Exit(0)


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
        _review_cmds,
        _takes_cmds,
        _template_cmds,
        _workflow_cmds,
    )

    app = typer.Typer(
        name="storycore",
        help="Render a StoryCore storyboard through ComfyUI.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False,
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the StoryCore version and exit.",
        ),
    ) -> None:
        """StoryCore: render a storyboard through ComfyUI, nothing lost, nothing rendered twice."""

    for module in (
        _project_cmds,
        _config_cmds,
        _comfyui_cmds,
        _workflow_cmds,
        _template_cmds,
        _render_cmds,
        _doctor_cmds,
        _board_cmds,
        _review_cmds,
        _takes_cmds,
        _assets_cmds,
    ):
        module.register(app)
    return app
