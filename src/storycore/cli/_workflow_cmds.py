"""``storycore preflight``: check every panel's graph against the server before rendering."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from storycore.cli._common import Output, cli_settings, command, shown

JSON_OPTION = typer.Option(False, "--json", help="Print the report as one JSON document.")
PROJECT_OPTION = typer.Option(Path("."), "--project", "-p", help="The project folder.")
BACKEND_OPTION = typer.Option(None, "--backend", help="ComfyUI server URL (default: configured).")
SHOTS_OPTION = typer.Option(
    None, "--shots", help="Only these shot ids (repeat, or comma-separate)."
)
TIMEOUT_OPTION = typer.Option(30.0, "--timeout", help="Seconds allowed to read the server's facts.")


@dataclass(frozen=True)
class ServerFacts:
    """What the preflight needs to know about one server."""

    url: str
    object_info: dict[str, Any]
    models: dict[str, list[str]]
    system_stats: dict[str, Any]


async def read_server_facts(spec: Any, settings: Any, limit: float) -> ServerFacts:
    """``/system_stats``, ``/object_info`` and the model folders of one server, within ``limit``
    (``--timeout``) in all; each request also within the settings' deadline and size limits."""
    from storycore.engine import client_for, read_node_and_model_lists
    from storycore.errors import ServerTimeout, StoryCoreError

    try:
        async with asyncio.timeout(limit), client_for(spec, settings) as client:
            stats = await client.system_stats()
            object_info, models = await read_node_and_model_lists(client)
    except TimeoutError as exc:
        if isinstance(exc, StoryCoreError):  # the client's own deadline: its words are right
            raise
        raise ServerTimeout(
            f"the server did not give its node and model lists within {limit:g} s",
            where=spec.url,
            hint="check that ComfyUI is running and answering, or raise --timeout",
        ) from None
    return ServerFacts(spec.url, object_info, models, stats)


async def first_server_facts(
    resolved: Any, backend: str | None, limit: float, out: Output
) -> ServerFacts:
    """The facts of the first server that answers: ``--backend``, else the configured backends
    in order, else ``comfyui.host:port`` and then ComfyUI Desktop's port (when the user chose no
    port). Raises :class:`~storycore.errors.NoServerReachable` (exit 4) naming each one tried."""
    from storycore.engine import backend_specs, desktop_port_for, desktop_spec, unreachable_error
    from storycore.errors import ComfyUIError

    settings = resolved.settings
    urls = [backend] if backend else []
    specs = backend_specs(settings, urls)
    desktop = desktop_spec(settings, desktop_port_for(resolved, urls))
    failed: list[tuple[Any, ComfyUIError]] = []
    for spec in [*specs, *([desktop] if desktop is not None else [])]:
        try:
            facts = await read_server_facts(spec, settings, limit)
        except ComfyUIError as err:
            failed.append((spec, err))
            continue
        if spec.desktop:
            out.info(
                f"Nothing answers at {specs[0].url}; using ComfyUI Desktop at {spec.url} "
                "(set comfyui.port to choose a server yourself)."
            )
        return facts
    raise unreachable_error(failed, named=bool(urls or settings.backends), renders=False)


def register(app: typer.Typer) -> None:
    """Add ``preflight`` to ``app``."""

    @command(app, "preflight")
    def preflight(
        project: Path = PROJECT_OPTION,
        backend: str | None = BACKEND_OPTION,
        shots: list[str] | None = SHOTS_OPTION,
        timeout: float = TIMEOUT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Build every panel's graph and list every problem (missing nodes, models, images,
        bad values, cycles), with estimates of time and VRAM. Submits nothing."""
        from storycore.engine import graph_options, load_templates
        from storycore.errors import PreflightFailed
        from storycore.panels import panels_from_project
        from storycore.project import load_project
        from storycore.workflows import preflight_panels

        out = Output(json_out)
        resolved = cli_settings(project if project.is_dir() else None)
        settings = resolved.settings
        loaded = load_project(project)
        selected = [s.strip() for item in shots or [] for s in item.split(",") if s.strip()]
        panels = panels_from_project(loaded, settings, selected or None)
        facts = asyncio.run(first_server_facts(resolved, backend, timeout, out))
        templates = load_templates(settings, loaded, facts.object_info)
        report = preflight_panels(
            panels,
            facts.object_info,
            facts.models,
            graph_options(settings),
            templates,
            system_stats=facts.system_stats,
            allow_api_nodes=settings.comfyui.allow_api_nodes,
        )
        if json_out:
            out.json({"server": facts.url, **report.to_dict()})
        else:
            _print_report(out, facts, report)
        raise typer.Exit(0 if report.ok else PreflightFailed.exit_code)


def _print_report(out: Output, facts: ServerFacts, report: Any) -> None:
    system = facts.system_stats.get("system", {})
    version = system.get("comfyui_version", "?") if isinstance(system, Mapping) else "?"
    out.data(f"[bold]Preflight[/] against {shown(facts.url)} (ComfyUI {shown(str(version))})")
    for class_type, places in report.missing_classes().items():
        out.data(
            f"[bold red]missing node class[/] {shown(class_type)} "
            f"(used by {shown(', '.join(places))})"
        )
    for problem in report.problems:
        if problem.code == "missing_node_class":
            continue
        style = "red" if problem.severity == "error" else "yellow"
        out.data(f"[{style}]{problem.severity}[/] {shown(problem.paragraph())}")
    if report.complexity is not None:
        c = report.complexity
        cal = c.calibration
        out.data(
            f"estimate on {shown(cal.device_name)} ({shown(cal.device_type)}): "
            f"about {c.total_seconds:.0f} s for {len(c.panels)} panel(s), "
            f"peak VRAM about {c.peak_vram_bytes / 1024**3:.1f} GiB"
        )
        for tip in c.suggestions:
            out.data(f"[cyan]suggestion[/] {shown(tip)}")
        by_tip: dict[str, list[str]] = {}
        for panel in c.panels:
            for tip in panel.suggestions:
                by_tip.setdefault(tip, []).append(panel.shot_id)
        for tip, shot_ids in by_tip.items():
            out.data(f"[cyan]suggestion[/] {shown(', '.join(shot_ids))}: {shown(tip)}")
    verdict = "[bold green]ready[/]" if report.ok else "[bold red]not ready[/]"
    out.data(f"{verdict}: {shown(report.summary())}")
