"""``storycore init``, ``validate``, ``schema`` and ``version``."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from storycore.cli._common import Output, cli_settings, command, shown

if TYPE_CHECKING:
    from storycore.panels import Panel, ValueSource
    from storycore.project import StoryboardWarning

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
NAME_ARGUMENT = typer.Argument(..., help="Project name (also the folder name).")
PATH_OPTION = typer.Option(Path("."), "--path", help="Folder to create the project in.")
PROJECT_OPTION = typer.Option(
    Path("."), "--project", "-p", help="The project folder (holds project.json)."
)
STRICT_OPTION = typer.Option(
    False, "--strict", help="Unknown keys are errors (exit 3), not warnings."
)


class SchemaKind(StrEnum):
    storyboard = "storyboard"
    project = "project"


# Hidden from the arguments list (Typer would add a Python type there): the usage line shows the
# choices and the help says what they are.
SCHEMA_ARGUMENT = typer.Argument(..., metavar="storyboard|project", hidden=True)

# The panel values `validate` shows, with their column titles.
_COLUMNS = (
    ("size", "Size"),
    ("seed", "Seed"),
    ("steps", "Steps"),
    ("cfg", "CFG"),
    ("sampler", "Sampler"),
    ("scheduler", "Scheduler"),
    ("checkpoint", "Checkpoint"),
    ("denoise", "Denoise"),
    ("negative_prompt", "Negative prompt"),
    ("template", "Template"),
)


def shell_quote(text: str, *, windows: bool | None = None) -> str:
    """``text`` as one word a shell reads back unchanged: POSIX quoting (``shlex.quote``), or on
    Windows double quotes (read alike by cmd and PowerShell) unless the text holds a character
    one of them would expand; then PowerShell's single quotes (its default terminal)."""
    if windows is None:
        windows = os.name == "nt"
    if not windows:
        return shlex.quote(text)
    if text and re.fullmatch(r"[\w./\\:=+-]+", text, flags=re.ASCII):
        return text
    if not re.search(r'["$`%]', text):
        return f'"{text}"'
    return "'" + text.replace("'", "''") + "'"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_SHORT = {"shot": "shot", "project default": "project default", "built-in default": "built-in"}


def _panel_table(out: Output, rows: list[tuple[Panel, dict[str, ValueSource]]]) -> None:
    from rich.table import Table

    table = Table(show_lines=True, title_justify="left")
    table.add_column("Shot", no_wrap=True)
    for _, title in _COLUMNS:
        table.add_column(title)
    for panel, sources in rows:
        cells = [shown(panel.shot_id)]
        for key, _ in _COLUMNS:
            found = sources[key]
            cells.append(f"{shown(_cell(found.value))}\n[dim]{_SHORT[found.source]}[/]")
        table.add_row(*cells)
    out.console.print(table)
    defaults = sorted(
        {
            found.detail
            for _, sources in rows
            for found in sources.values()
            if found.source == "project default"
        }
    )
    if defaults:
        out.data("project defaults:")
        for detail in defaults:
            out.data(f"  {shown(detail)}")
    out.data(
        "shot: the shot's own value; project default: a setting or project.json's config; "
        "built-in: StoryCore's default"
    )


def _strict_error(root: Path, warnings: list[StoryboardWarning]) -> Exception:
    from storycore.errors import ProjectError

    count = f"{len(warnings)} unknown key" + ("" if len(warnings) == 1 else "s")
    return ProjectError(
        f"{count} (--strict makes them errors): " + "; ".join(w.text() for w in warnings),
        where=str(root),
        hint="Fix the key names; keep your own data under keys starting with `x_` "
        "(or a shot's `notes`)",
    )


def register(app: typer.Typer) -> None:
    """Add the project commands to ``app``."""

    @command(app, "version", reads_settings=False)
    def version(json_out: bool = JSON_OPTION) -> None:
        """Print the StoryCore version."""
        from storycore import __version__

        out = Output(json_out)
        if json_out:
            out.json({"ok": True, "version": __version__})
        else:
            out.data(f"storycore {__version__}")

    @command(app, "init", reads_settings=False)
    def init(
        name: str = NAME_ARGUMENT,
        path: Path = PATH_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Create a new project NAME (also its folder's name) with three placeholder shots.

        A folder that already holds project.json or storyboard.json is refused; nothing in it
        is ever overwritten."""
        from storycore.project import init_project, load_project

        out = Output(json_out)
        root = init_project(name, path)
        project = load_project(root)
        next_step = ["storycore", "generate-images", "--project", str(root)]
        if json_out:
            out.json(
                {
                    "ok": True,
                    "project": str(root),
                    "project_id": project.project_id,
                    "global_seed": project.global_seed,
                    "shots": [s.shot_id for s in project.shots],
                    "next": next_step,
                }
            )
        else:
            out.info(f"Created project '{shown(project.project_id)}' in {shown(str(root))}")
            out.info(f"  global seed {project.global_seed}, {len(project.shots)} shots")
            out.info("  next: " + shown(" ".join(shell_quote(word) for word in next_step)))

    @command(app, "validate")
    def validate(
        project: Path = PROJECT_OPTION,
        strict: bool = STRICT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Check a project's project.json and storyboard.json; list each panel's values and
        where each came from (the shot, a project default, StoryCore's default)."""
        from storycore.panels import panel_sources, panels_from_project
        from storycore.project import load_project, storyboard_warnings

        out = Output(json_out)
        loaded = load_project(project)
        warnings = storyboard_warnings(loaded)
        if strict and warnings:
            raise _strict_error(loaded.root, warnings)
        resolved = cli_settings(loaded.root)
        panels = panels_from_project(loaded, resolved.settings)
        rows = [
            (panel, panel_sources(loaded, shot, panel, resolved))
            for panel, shot in zip(panels, loaded.shots, strict=True)
        ]
        if json_out:
            out.json(
                {
                    "ok": True,
                    "project": str(loaded.root),
                    "project_id": loaded.project_id,
                    "warnings": [w.to_dict() for w in warnings],
                    "panels": [_panel_json(panel, sources) for panel, sources in rows],
                }
            )
            return
        for warning in warnings:
            out.warn(warning.text())
        if warnings:
            out.info(
                "Keys starting with `x_` or `x-` (and a shot's `notes`) are yours and never "
                "warned about; `--strict` makes unknown keys errors."
            )
        out.info(
            f"{shown(str(loaded.root))}: valid ({len(panels)} shots, "
            f"project '{shown(loaded.project_id)}')"
        )
        _panel_table(out, rows)

    @command(app, "schema", reads_settings=False)
    def schema(kind: SchemaKind = SCHEMA_ARGUMENT, json_out: bool = JSON_OPTION) -> None:
        """Print the JSON Schema of storyboard.json (`storyboard`) or project.json (`project`)
        for editors: `storycore schema storyboard > storyboard.schema.json`, then
        `"$schema": "./storyboard.schema.json"` at the top of storyboard.json."""
        from storycore.project import project_schema, storyboard_schema

        document = storyboard_schema() if kind is SchemaKind.storyboard else project_schema()
        text = json.dumps(document, ensure_ascii=False, indent=None if json_out else 2)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _panel_json(panel: Panel, sources: dict[str, ValueSource]) -> dict[str, Any]:
    return {
        "shot_id": panel.shot_id,
        "width": panel.width,
        "height": panel.height,
        "seed": panel.seed,
        "seed_source": panel.seed_source,
        "steps": panel.steps,
        "values": {
            key: {"value": found.value, "source": found.source, "detail": found.detail}
            for key, found in sources.items()
        },
    }
