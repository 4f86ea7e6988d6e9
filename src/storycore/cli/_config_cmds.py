"""``storycore config show``, ``storycore config validate`` and ``storycore config path``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command
from storycore.errors import ProjectError

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PROJECT_OPTION = typer.Option(
    None, "--project", "-p", help="A project folder whose storycore.toml applies."
)
# Values longer than this do not push every "# source" comment to the right.
_VALUE_COLUMN = 40


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to ``app``."""
    group = typer.Typer(help="Show and check the resolved settings.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @command(group, "show")
    def show(
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Print every setting in TOML syntax, with where its value came from (credentials
        masked). trust.project_servers and trust.reference_folders (from your user config, the
        environment or flags only) say which servers and outside folders a project may name."""
        out = Output(json_out)
        resolved = cli_settings(_project_dir(project))
        rows = resolved.explain()
        if json_out:
            out.json(
                {
                    "ok": True,
                    "settings": resolved.masked(),
                    "sources": {name: source for name, _, source in rows},
                    "warnings": list(resolved.warnings),
                }
            )
            return
        for line in settings_lines(rows):
            # plain text: no markup, no emoji codes, never wrapped or cut (soft wrap)
            out.console.print(line, markup=False, emoji=False, highlight=False)

    @command(group, "validate")
    def validate(
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Check the settings from every source; exit 2 with the field named if one is wrong."""
        out = Output(json_out)
        resolved = cli_settings(_project_dir(project))
        layers = sorted({source for source in resolved.sources.values()})
        if json_out:
            out.json({"ok": True, "sources": layers, "warnings": list(resolved.warnings)})
        else:
            out.data("Settings are valid.")
            for layer in layers:
                out.data(f"  from {layer}")

    @command(group, "path", reads_settings=False)
    def path(json_out: bool = JSON_OPTION) -> None:
        """Print where your user config file is (settings a project's storycore.toml may not
        set, such as comfyui.install_path, backends or [trust], go there)."""
        from storycore.config import user_config_path

        out = Output(json_out)
        where = user_config_path()
        if json_out:
            out.json({"ok": True, "path": str(where), "exists": where.is_file()})
            return
        out.console.print(str(where), markup=False, emoji=False, highlight=False)
        if not where.is_file():
            out.info("(it does not exist yet: create it to set something)")


def _project_dir(project: Path | None) -> Path | None:
    """``--project`` must name a folder: a typo would otherwise show the defaults silently."""
    if project is not None and not project.is_dir():
        raise ProjectError(
            "is not a folder" if project.exists() else "does not exist",
            where=str(project),
            hint="Give the project folder (the one holding project.json and storycore.toml)",
        )
    return project


def settings_lines(rows: Sequence[tuple[str, Any, str]]) -> list[str]:
    """``name = value  # source`` lines, aligned: a TOML document (dotted keys) that can be
    pasted into ``storycore.toml``. A setting with no value is a comment."""
    from storycore.config import toml_value

    name_width = max((len(name) for name, _, _ in rows), default=0) + 2
    shown = [(name, None if value is None else toml_value(value), src) for name, value, src in rows]
    value_width = min(max((len(v or "") for _, v, _ in shown), default=0), _VALUE_COLUMN)
    lines = []
    for name, value, source in shown:
        if value is None:
            text = f"# {name:<{name_width - 2}} = {'(not set)':<{value_width}}"
        else:
            text = f"{name:<{name_width}} = {value:<{value_width}}"
        lines.append(f"{text}  # {source}")
    return lines
