"""``storycore template``: bring a ComfyUI workflow into a project as a template.

Two commands, each in its own module: ``convert`` (``_template_convert.py``: a UI-format workflow,
subgraphs included, to the API format) and ``add`` (``_template_add.py``: import a workflow in one
step, inferring its bindings and registering it in ``storycore.toml``).
"""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``template`` group and its commands to ``app``."""
    from storycore.cli import _template_add, _template_convert

    group = typer.Typer(
        help="Bring ComfyUI workflows into the project as templates.", no_args_is_help=True
    )
    app.add_typer(group, name="template")
    _template_convert.register(group)
    _template_add.register(group)
