"""``storycore doctor`` and ``storycore metrics``: render reports built outside the CLI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from storycore.cli._common import Output, cli_settings, cli_state, command, shown

if TYPE_CHECKING:
    from storycore.doctor import DoctorReport
    from storycore.monitoring import RunsSummary

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PROJECT_OPTION = typer.Option(None, "--project", "-p", help="The project folder to check.")
BACKEND_OPTION = typer.Option(
    None, "--backend", help="The ComfyUI server to check (default: as generate-images finds it)."
)
URL_OPTION = typer.Option(None, "--url", hidden=True, help="Same as --backend (older name).")
LAST_OPTION = typer.Option(5, "--last", min=1, max=100, help="How many recent runs to show.")
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
GIB = 1024**3


def register(app: typer.Typer) -> None:
    """Add ``doctor`` and ``metrics`` to ``app``."""

    @command(app, "doctor")
    def doctor(
        project: Path | None = PROJECT_OPTION,
        backend: str | None = BACKEND_OPTION,
        url: str | None = URL_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Check platform, GPUs, ComfyUI install and server, models and the project; exit 4 when
        no ComfyUI answers (or it cannot give its node and model lists), 1 when something
        else must be fixed before rendering."""
        from storycore.doctor import build_report
        from storycore.errors import ConfigError, NoServerReachable

        if backend and url and backend != url:
            raise ConfigError("--backend and --url name different servers", where="--url")

        out = Output(json_out)
        # --config FILE: resolved here, so a missing file exits 2 as in every other command;
        # without it build_report resolves the settings and reports a mistake as a problem
        resolved = cli_settings(project) if cli_state().config is not None else None
        report = asyncio.run(
            build_report(project_dir=project, url=backend or url, resolved=resolved)
        )
        if json_out:
            out.json(report.to_dict())
        else:
            _render_report(out, report)
        if not report.server.complete:  # none answered, or its node or model lists failed
            raise typer.Exit(NoServerReachable.exit_code)
        if not report.ok:
            raise typer.Exit(1)

    @command(app, "metrics", reads_settings=False)
    def metrics(
        project: Path | None = PROJECT_OPTION,
        last: int = LAST_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Summarise the last render runs: panels per hour, time split, slowest panels, alerts."""
        from storycore.monitoring import metrics_dir_for, summarise_runs

        out = Output(json_out)
        summary = summarise_runs(metrics_dir_for(project or Path.cwd()), last=last)
        if json_out:
            out.json({"ok": True, **summary.to_dict()})
        else:
            _render_metrics(out, summary)


def _render_report(out: Output, report: DoctorReport) -> None:
    c = out.console
    c.print(f"[bold]Platform[/]  {shown(report.os.label)}, Python {shown(report.os.python)}")
    if report.gpus:
        for gpu in report.gpus:
            memory = f"{gpu.memory_total / GIB:.1f} GiB" if gpu.memory_total else "memory unknown"
            via = shown(gpu.source)
            c.print(f"[bold]GPU {gpu.index}[/]     {shown(gpu.name)} ({memory}, via {via})")
    else:
        c.print("[bold]GPU[/]       none found")
    flags = " ".join(report.launch.flags) or "(none)"
    c.print(f"[bold]Launch[/]    {shown(flags)}")
    for reason in report.launch.reasons:
        c.print(f"            {shown(reason)}")
    install = report.install
    if install.found:
        c.print(f"[bold]Install[/]   {shown(install.kind)} at {shown(str(install.root))}")
    else:
        c.print(f"[bold]Install[/]   not found at {shown(install.path)}")
    server = report.server
    if server.reachable:
        devices = ", ".join(str(d.get("name")) for d in server.devices) or "no devices"
        if server.emulator:
            what = "StoryCore's emulator (placeholders)"
        else:
            what = f"{'ComfyUI Desktop' if server.desktop else 'ComfyUI'} {server.version}"
        nodes = "" if server.node_classes is None else f"{server.node_classes} node classes, "
        c.print(
            f"[bold]Server[/]    {shown(server.url)}: {shown(what)}, {nodes}{shown(devices)} "
            f"({server.elapsed_ms or 0:.0f} ms)"
        )
        if server.error is not None:
            c.print(f"            [bold red]failed[/] {shown(server.error)}")
        for line in capability_lines(server.capabilities):
            c.print(f"            {shown(line)}")
        for tried in server.tried:
            c.print(f"            {shown(tried['url'])}: {shown(tried['why'])}")
    else:
        c.print("[bold]Server[/]    no ComfyUI server is reachable:")
        for tried in server.tried:
            c.print(f"            {shown(tried['url'])}: {shown(tried['why'])}")
    if report.inventory is not None:
        counts = ", ".join(
            f"{folder} {len(files)}" for folder, files in report.inventory.files.items() if files
        )
        c.print(f"[bold]Models[/]    {shown(counts) or 'none found'}")
        for model in report.inventory.files.get("checkpoints", []):
            size = f"{model.size / GIB:.2f} GiB"
            c.print(f"            {shown(model.name)}  {size}  {shown(model.family)}")
    if report.project is not None:
        p = report.project
        c.print(f"[bold]Project[/]   {shown(p.path)}: {shown(p.panels)} panels")
        if p.storage:
            stored = ", ".join(
                f"{t['count']} {kind} ({t['bytes'] / 2**20:.1f} MiB)"
                for kind, t in p.storage.items()
                if t["count"]
            )
            c.print(f"            assets: {shown(stored) or 'none yet'}")
        for folder, names in p.models_needed.items():
            missing = set(p.models_missing.get(folder, []))
            listed = ", ".join(f"{n}{' (missing)' if n in missing else ''}" for n in names)
            c.print(f"            {shown(folder)}: {shown(listed)}")
        for class_type, pack in p.nodes_needed.items():
            state = "missing" if class_type in p.nodes_missing else "ok"
            c.print(f"            node {shown(class_type)} ({shown(pack)}): {state}")
    if report.settings:
        changed = [(n, v, s) for n, v, s in report.settings if s != "default"]
        if changed:
            c.print("[bold]Settings[/]  (not defaults)")
            for name, value, source in changed:
                c.print(
                    f"            {shown(name)} = {shown(repr(value))}  [dim]{shown(source)}[/]"
                )
    if report.recent_diagnoses:
        c.print("[bold]Recent failures[/] (the project's diagnostic history)")
        for d in report.recent_diagnoses:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d["timestamp"]))
            c.print(f"  {when} {shown(d['severity'])} {shown(d['code'])}: {shown(d['suggestion'])}")
    if not report.problems:
        c.print("[bold green]No problems found.[/]")
        return
    c.print("[bold]Problems[/]")
    for problem in report.problems:
        style = _STYLE[problem.severity]
        c.print(f"  [{style}]{problem.severity}[/] {shown(problem.message)}")
        if problem.fix:
            c.print(f"          fix: {shown(problem.fix)}")


def capability_lines(caps: Mapping[str, Any] | None) -> list[str]:
    """A server's capabilities (``ServerCapabilities.to_dict()``) as plain lines: generation
    and jobs API, feature flags, GPUs, packages. Callers escape them (``shown``)."""
    if not caps:
        return []
    jobs = "yes (/api/jobs)" if caps.get("jobs_api") else "no (/queue and /history)"
    generation = "today's" if caps.get("generation") == "current" else "0.3.64"
    lines = [f"capabilities: {generation} ComfyUI API, jobs API {jobs}"]
    if caps.get("deploy_environment"):
        lines[0] += f", deployed as {caps['deploy_environment']}"
    flags = caps.get("features") or {}
    on = sorted(str(k) for k, v in flags.items() if v is True)
    other = sorted(f"{k}={v}" for k, v in flags.items() if not isinstance(v, bool | dict))
    if flags:
        lines.append("feature flags: " + ", ".join(on + other))
    gpus = [d for d in caps.get("devices") or [] if d.get("type") != "cpu"]
    listed = "; ".join(
        f"{d.get('name')}" + (f" {d['vram_total'] / GIB:.0f} GiB" if d.get("vram_total") else "")
        for d in gpus[:8]
    )
    lines.append(f"GPUs: {len(gpus)}" + (f" ({listed})" if gpus else " (CPU only)"))
    packages = caps.get("package_versions") or []
    if packages:
        lines.append(
            "packages: "
            + ", ".join(f"{p.get('name')} {p.get('installed') or 'missing'}" for p in packages)
        )
    return lines


def _render_metrics(out: Output, summary: RunsSummary) -> None:
    c = out.console
    if not summary.runs:
        c.print(f"No runs recorded in {shown(str(summary.metrics_dir))}.")
        return
    for run in summary.runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else "?"
        rate = f"{run.panels_per_hour:.1f} panels/hour" if run.panels_per_hour else "no rate"
        c.print(
            f"[bold]{shown(run.run_id)}[/] {when}  {shown(run.status)}: {shown(run.panels_ok)} "
            f"ok, {shown(run.panels_failed)} failed, {rate}"
        )
        total = sum(run.time_split.values())
        if total:
            split = ", ".join(
                f"{name} {seconds:.1f}s ({100 * seconds / total:.0f}%)"
                for name, seconds in sorted(run.time_split.items(), key=lambda kv: -kv[1])
            )
            c.print(f"  time: {shown(split)}")
        if run.slowest_panels:
            slow = ", ".join(f"{p['panel']} {p['seconds']:.1f}s" for p in run.slowest_panels)
            c.print(f"  slowest: {shown(slow)}")
        for alert in run.alerts:
            c.print(
                f"  [{_STYLE.get(str(alert['level']), 'yellow')}]{shown(alert['level'])}[/] "
                f"{shown(str(alert['message']))}"
            )
