"""``storycore init``, ``storycore validate`` and ``storycore version``."""

from __future__ import annotations

from pathlib import Path

import typer

from storycore.cli._common import Output, cli_settings, command

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
NAME_ARGUMENT = typer.Argument(..., help="Project name (also the folder name).")
PATH_OPTION = typer.Option(Path("."), "--path", help="Folder to create the project in.")
PROJECT_OPTION = typer.Option(
    Path("."), "--project", "-p", help="The project folder (holds project.json)."
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
        """Create a new project NAME (also its folder's name) with three placeholder shots."""
        from storycore.project import init_project, load_project

        out = Output(json_out)
        root = init_project(name, path)
        project = load_project(root)
        if json_out:
            out.json(
                {
                    "ok": True,
                    "project": str(root),
                    "project_id": project.project_id,
                    "global_seed": project.global_seed,
                    "shots": [s.shot_id for s in project.shots],
                }
            )
        else:
            out.info(f"Created project '{project.project_id}' in {root}")
            out.info(f"  global seed {project.global_seed}, {len(project.shots)} shots")
            out.info(f"  next: storycore generate-images --project {root}")

    @command(app, "validate")
    def validate(project: Path = PROJECT_OPTION, json_out: bool = JSON_OPTION) -> None:
        """Check a project's project.json and storyboard.json."""
        from storycore.panels import panels_from_project
        from storycore.project import load_project

        out = Output(json_out)
        loaded = load_project(project)
        settings = cli_settings(loaded.root).settings
        panels = panels_from_project(loaded, settings)
        if json_out:
            out.json(
                {
                    "ok": True,
                    "project": str(loaded.root),
                    "project_id": loaded.project_id,
                    "panels": [
                        {
                            "shot_id": p.shot_id,
                            "width": p.width,
                            "height": p.height,
                            "seed": p.seed,
                            "seed_source": p.seed_source,
                            "steps": p.steps,
                        }
                        for p in panels
                    ],
                }
            )
        else:
            out.info(f"{loaded.root}: valid ({len(panels)} shots, project '{loaded.project_id}')")
            for p in panels:
                out.data(
                    f"  {p.shot_id}: {p.width}x{p.height}, seed {p.seed} ({p.seed_source}), "
                    f"{p.steps} steps"
                )
