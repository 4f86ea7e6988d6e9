"""``storycore config show`` and ``storycore config validate``."""

from __future__ import annotations

from pathlib import Path

import typer

from storycore.cli._common import Output, cli_settings, command

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PROJECT_OPTION = typer.Option(
    None, "--project", "-p", help="A project folder whose storycore.toml applies."
)


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to ``app``."""
    group = typer.Typer(help="Show and check the resolved settings.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @command(group, "show")
    def show(
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Print every setting, its value and where it came from."""
        out = Output(json_out)
        resolved = cli_settings(project)
        rows = resolved.explain()
        if json_out:
            out.json(
                {
                    "ok": True,
                    "settings": resolved.settings.model_dump(mode="json"),
                    "sources": {name: source for name, _, source in rows},
                }
            )
            return
        from rich.table import Table

        table = Table("setting", "value", "source", box=None, pad_edge=False)
        for name, value, source in rows:
            table.add_row(name, repr(value) if isinstance(value, str) else str(value), source)
        out.console.print(table)

    @command(group, "validate")
    def validate(
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Check the settings from every source; exit 2 with the field named if one is wrong."""
        out = Output(json_out)
        resolved = cli_settings(project)
        layers = sorted({source for source in resolved.sources.values()})
        if json_out:
            out.json({"ok": True, "sources": layers})
        else:
            out.data("Settings are valid.")
            for layer in layers:
                out.data(f"  from {layer}")
