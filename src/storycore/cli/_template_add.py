"""``storycore template add``: import a ComfyUI workflow as a template in one step.

The workflow (API or UI format) is read, converted to the API format with the server's node
catalog when it is a UI workflow, its bindings are inferred
(:func:`storycore.workflows._infer_bindings.infer_bindings`) and checked the way a render loads
them (:func:`storycore.workflows.template_from_data`); then the workflow is copied, as given,
to ``<project>/templates/<name>.<api|ui>.json``, the binding file is written beside it
(``<name>.binding.toml``) and the template is registered in the project's ``storycore.toml``
(``[templates] <name> = "templates/<name>.binding.toml"``). All three writes are atomic and
inside the project.

The node catalog: ``--backend URL``'s ``/object_info`` (that server must answer), else the
configured server's when it answers within ``--timeout``, else the node list of ComfyUI 0.3.64
that ships with the emulator (core nodes and the two recorded node packs), with a note.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command, shown
from storycore.cli._template_common import (
    MAX_WORKFLOW_BYTES,
    SHIPPED,
    node_catalog,
    read_json_file,
)

__all__ = ["register"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

WORKFLOW_ARGUMENT = typer.Argument(..., help="The workflow file (API or UI format JSON).")
NAME_OPTION = typer.Option(..., "--name", help="The template's name (letters, digits, _ and -).")
PROJECT_OPTION = typer.Option(Path("."), "--project", "-p", help="The project folder.")
BACKEND_OPTION = typer.Option(
    None, "--backend", help="ComfyUI server whose node list to use (default: configured)."
)
FORCE_OPTION = typer.Option(False, "--force", help="Replace a template of the same name.")
CHECKPOINT_OPTION = typer.Option(
    False, "--bind-checkpoint", help="Let render.checkpoint choose the workflow's checkpoint."
)
TIMEOUT_OPTION = typer.Option(10.0, "--timeout", help="Seconds allowed to read the node list.")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON document.")


def _read_workflow(path: Path) -> tuple[bytes, Any]:
    hint = "give the path of a workflow saved or exported from ComfyUI"
    return read_json_file(path, MAX_WORKFLOW_BYTES, "workflow", hint)


def _catalog(resolved: Any, backend: str | None, limit: float, out: Output) -> tuple[Any, str]:
    """The node catalog and where it came from (a URL, or ``"shipped"``)."""
    catalog, url, problems = node_catalog(resolved.settings, backend, limit)
    if url is None:
        out.info(
            f"[yellow]note:[/] no node list from {shown('; '.join(problems))}; using {SHIPPED}. "
            "Run 'storycore preflight' once the server is up."
        )
    return catalog, url or "shipped"


def _print(out: Output, result: dict[str, Any]) -> None:
    from rich.table import Table

    out.data(
        f"[bold]Template {shown(result['template'])}[/] added: {shown(result['workflow'])} + "
        f"{shown(result['binding_file'])} (node list: {shown(result['catalog'])})"
    )
    table = Table("value", "node", "class", "title", "input", "note", box=None, pad_edge=False)
    for item in result["bound"]:
        keys = ("value", "node", "class", "title", "input", "note")
        cells = [shown(item[k] or "") for k in keys]
        table.add_row(*cells)
    out.console.print(table)
    if result["not_bound"]:
        out.data("[bold]Not bound[/]")
        missing = Table("value", "why", box=None, pad_edge=False)
        for item in result["not_bound"]:
            missing.add_row(shown(item["value"]), shown(item["reason"]))
        out.console.print(missing)
    for node in result["output_nodes"]:
        out.data(
            f"output: node {shown(node['node'])} ({shown(node['class'])}"
            + (f", {shown(repr(node['title']))}" if node["title"] else "")
            + "); its filename_prefix is set per shot by StoryCore"
        )
    for note in result["notes"]:
        out.data(f"[cyan]note[/] {shown(note)}")
    out.data(
        f"Registered as templates.{shown(result['template'])} in {shown(result['settings_file'])}"
        f"; use it with render.template = {shown(json.dumps(result['template']))} or a shot's "
        "template, and check it with 'storycore preflight'."
    )


def register(group: typer.Typer) -> None:
    """Add ``add`` to the ``template`` group."""

    @command(group, "add")
    def add(
        workflow: Path = WORKFLOW_ARGUMENT,
        name: str = NAME_OPTION,
        project: Path = PROJECT_OPTION,
        backend: str | None = BACKEND_OPTION,
        force: bool = FORCE_OPTION,
        bind_checkpoint: bool = CHECKPOINT_OPTION,
        timeout: float = TIMEOUT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Import a ComfyUI workflow (API or UI format) as a template: infer where each panel
        value goes, write the binding file next to a copy of the workflow in the project's
        templates folder, and register it in storycore.toml."""
        from storycore._config_edit import planned_entry
        from storycore._fsutil import atomic_write_bytes, atomic_write_text
        from storycore.config import PROJECT_CONFIG_NAME
        from storycore.errors import ConfigError, TemplateError
        from storycore.project import load_project
        from storycore.workflows import template_from_data
        from storycore.workflows._infer_bindings import infer_bindings
        from storycore.workflows._infer_graph import GraphView
        from storycore.workflows._infer_result import binding_file_text
        from storycore.workflows._ui_format import is_api_format, is_ui_format, ui_to_api

        out = Output(json_out)
        if not _NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a usable template name",
                where="--name",
                hint="use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit",
            )
        resolved = cli_settings(project if project.is_dir() else None)
        loaded = load_project(project)
        root = loaded.root
        raw, data = _read_workflow(workflow)
        source = str(workflow)
        ui = is_ui_format(data)
        if not ui and not is_api_format(data):
            raise TemplateError(
                "the file is neither a ComfyUI API-format nor a UI-format workflow",
                where=source,
                hint="save it from ComfyUI (Workflow > Save) or export it (Export (API))",
            )
        catalog, catalog_source = _catalog(resolved, backend, timeout, out)
        graph = ui_to_api(data, catalog, source) if ui else dict(data)
        inferred = infer_bindings(graph, catalog, bind_checkpoint=bind_checkpoint, source=source)
        folder = root / "templates"
        workflow_name = f"{name}.{'ui' if ui else 'api'}.json"
        binding_path = folder / f"{name}.binding.toml"
        relative = f"templates/{binding_path.name}"
        targets = [folder / workflow_name, binding_path]
        same_file = workflow.resolve() == targets[0].resolve()
        existing = [p for p in targets if p.exists() and not (same_file and p == targets[0])]
        if existing and not force:
            raise TemplateError(
                f"a template named {name!r} is already there ({existing[0].name})",
                where=str(folder),
                hint="choose another --name, or pass --force to replace it",
            )
        text = binding_file_text(name, workflow_name, inferred)
        template_from_data(name, data, inferred.bindings(), object_info=catalog, source=source)
        config = root / PROJECT_CONFIG_NAME
        settings_text = planned_entry(config, name, relative, replace=force)
        origin = resolved.source_of("templates")
        hidden = sorted(resolved.settings.templates) if not origin.startswith("project") else []
        if hidden and settings_text is not None:
            # a project's [templates] table replaces the user's whole table (config._merge)
            out.warn(
                f"the templates {', '.join(hidden)} from {origin} are not seen in this project "
                "once it has a [templates] table of its own (a project's table replaces the "
                "user's); copy those inside the project and list them there too"
            )
        if not same_file:
            atomic_write_bytes(targets[0], raw, inside=root)
        atomic_write_text(binding_path, text, inside=root)
        if settings_text is not None:
            atomic_write_text(config, settings_text, inside=root)
        view = GraphView(graph, catalog)
        result = {
            "template": name,
            "format": "ui" if ui else "api",
            "workflow": f"templates/{workflow_name}",
            "binding_file": relative,
            "settings_file": str(config),
            "catalog": catalog_source,
            "sampler": inferred.sampler_id,
            "output_nodes": [
                {"node": i, "class": view.class_of(i), "title": view.title(i)}
                for i in inferred.output_ids
            ],
            "bindings": inferred.bindings(),
            "bound": [
                {
                    "value": b.value,
                    "node": b.node_id,
                    "class": b.class_type,
                    "title": b.title,
                    "input": b.input,
                    "target": b.target,
                    "note": b.note,
                }
                for b in inferred.bound
            ],
            "not_bound": [
                {"value": n.value, "kind": n.kind, "reason": n.reason} for n in inferred.not_bound
            ],
            "notes": list(inferred.notes),
        }
        if json_out:
            out.json(result)
        else:
            _print(out, result)
