"""``storycore template convert``: a UI-format workflow (subgraphs included) to the API format.

The API format is what ComfyUI's ``/prompt`` takes: node id -> ``{class_type, inputs,
_meta}``, with the ids the front end would send (``"57:12"`` for a node inside subgraph
instance 57). Converting needs each node class's input order, from a node list:

* ``--object-info FILE``: a saved ``/object_info`` answer (JSON object; at most 64 MiB);
* ``--backend URL``: that server's ``/object_info`` (it must answer);
* neither: the configured server's, when it answers within ``--timeout``; else the node list of
  ComfyUI 0.3.64 that ships with the emulator (core nodes and two recorded node packs), with a
  warning, since a newer ComfyUI may order some widgets differently.

The result goes to stdout as one JSON document, or with ``--out FILE`` to that file (written
atomically). A workflow that cannot be converted exits 6 with one paragraph naming the node.
"""

from __future__ import annotations

import json
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

__all__ = ["MAX_OBJECT_INFO_BYTES", "MAX_WORKFLOW_BYTES", "register"]

MAX_OBJECT_INFO_BYTES = 64 * 1024 * 1024

WORKFLOW_ARGUMENT = typer.Argument(..., help="The workflow file saved from ComfyUI (JSON).")
OBJECT_INFO_OPTION = typer.Option(
    None, "--object-info", metavar="FILE", help="Use this saved /object_info answer (JSON)."
)
BACKEND_OPTION = typer.Option(
    None, "--backend", help="ComfyUI server whose node list to use (default: configured)."
)
OUT_OPTION = typer.Option(
    None, "--out", metavar="FILE", help="Write the API-format graph here instead of stdout."
)
TIMEOUT_OPTION = typer.Option(
    5.0, "--timeout", help="Seconds allowed to read the server's node list."
)


def _object_info_file(path: Path) -> Any:
    from storycore.errors import TemplateError
    from storycore.workflows import NodeCatalog

    hint = "save the answer of GET /object_info from the ComfyUI server (curl URL/object_info)"
    _, data = read_json_file(path, MAX_OBJECT_INFO_BYTES, "node list (--object-info)", hint)
    if not isinstance(data, dict) or not data:
        raise TemplateError(
            "the node list (--object-info) is not a JSON object of node classes",
            where=str(path),
            hint=hint,
        )
    bad = next((name for name, body in data.items() if not isinstance(body, dict)), None)
    if bad is not None:
        raise TemplateError(
            f"node class {bad[:60]!r} of the node list (--object-info) is not an object",
            where=str(path),
            hint=hint,
        )
    return NodeCatalog(data)


def _catalog(object_info: Path | None, backend: str | None, limit: float, out: Output) -> Any:
    if object_info is not None:
        return _object_info_file(object_info)
    catalog, url, problems = node_catalog(cli_settings().settings, backend, limit)
    if url is None:
        out.warn(
            f"no node list from {'; '.join(problems)}; converting with {SHIPPED}: widget "
            "order comes from ComfyUI 0.3.64's nodes, so check the result, or pass --backend URL "
            "or --object-info FILE"
        )
    return catalog


def register(group: typer.Typer) -> None:
    """Add ``convert`` to the ``template`` group."""

    @command(group, "convert")
    def convert(
        workflow: Path = WORKFLOW_ARGUMENT,
        object_info: Path | None = OBJECT_INFO_OPTION,
        backend: str | None = BACKEND_OPTION,
        out_file: Path | None = OUT_OPTION,
        timeout: float = TIMEOUT_OPTION,
    ) -> None:
        """Convert a workflow saved from ComfyUI (UI format, subgraphs included) to the API
        format that /prompt takes, and print it as JSON."""
        from storycore._fsutil import atomic_write_text
        from storycore.errors import ConfigError, TemplateError
        from storycore.workflows._ui_format import is_api_format, is_ui_format, ui_to_api

        out = Output(False)
        if object_info is not None and backend:
            raise ConfigError(
                "--object-info and --backend both name a node list",
                where="storycore template convert",
                hint="give one of them",
            )
        hint = "give the path of a workflow saved from ComfyUI (Workflow > Save)"
        _, data = read_json_file(workflow, MAX_WORKFLOW_BYTES, "workflow", hint)
        source = str(workflow)
        if is_api_format(data):
            graph = dict(data)
            out.info("[cyan]note:[/] the workflow is already in the API format; printed as is")
        elif is_ui_format(data):
            catalog = _catalog(object_info, backend, timeout, out)
            graph = ui_to_api(data, catalog, source)
        else:
            raise TemplateError(
                "the file is neither a ComfyUI UI-format nor an API-format workflow",
                where=source,
                hint=hint,
            )
        if not graph:
            raise TemplateError(
                "the workflow has no node to run (every node is virtual, muted or bypassed)",
                where=source,
                hint="un-mute the nodes in ComfyUI and save the workflow again",
            )
        text = json.dumps(graph, indent=2, ensure_ascii=False) + "\n"
        if out_file is None:
            out.json(graph)
            return
        atomic_write_text(out_file, text)
        out.info(f"Wrote {len(graph)} nodes in the API format to {shown(out_file)}")
