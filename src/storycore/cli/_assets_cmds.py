"""``storycore assets list|stats|verify|clean``: what is stored, is it intact, make room."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from storycore.cli._common import Output, cli_settings, command

if TYPE_CHECKING:
    from storycore.assets import RetentionPolicy, ServerCleanReport

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PROJECT_OPTION = typer.Option(
    Path("."), "--project", "-p", help="The project folder (holds project.json)."
)

DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Say what would go; change nothing.")
KEEP_NEWEST_OPTION = typer.Option(
    None, "--keep-newest", help="Keep this many newest renders per shot (overrides config)."
)
SERVER_OPTION = typer.Option(
    False, "--server", help="Also remove our outputs and uploads from the local ComfyUI."
)
COMFYUI_DIR_OPTION = typer.Option(
    None,
    "--comfyui-dir",
    help="The ComfyUI folder holding output/ and input/ (default: comfyui.install_path's "
    "ComfyUI/ subfolder, else comfyui.install_path itself; when that is the default, also the "
    "places `comfyui start` searches, then ComfyUI Desktop's base folder).",
)


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def _policy(root: Path, keep_newest: int | None) -> RetentionPolicy:
    """The retention policy: from the settings once they carry ``assets``, else storycore.toml."""
    from storycore.assets import RetentionPolicy, build_policy, load_retention_policy
    from storycore.config import Settings

    overrides = {"keep_newest": keep_newest}
    if "assets" in Settings.model_fields:
        configured = getattr(cli_settings(root).settings, "assets", None)
        if isinstance(configured, RetentionPolicy):
            return build_policy(configured.model_dump(), "settings", overrides)
    return load_retention_policy(root, overrides)


def _server_side(
    root: Path, comfyui_dir: Path | None, dry_run: bool, out: Output
) -> ServerCleanReport:
    from storycore.assets import clean_server, find_comfyui_dir
    from storycore.errors import AssetError

    settings = cli_settings(root).settings
    local = [settings.comfyui.url, *(b.url for b in settings.backends if b.managed)]
    looked: list[str] = []
    if comfyui_dir is not None:
        if not comfyui_dir.is_dir():
            raise AssetError(
                "is not a folder",
                where=str(comfyui_dir),
                hint="Pass --comfyui-dir the ComfyUI folder that holds output/ and input/",
            )
        found: Path | None = comfyui_dir
    else:
        found, looked = find_comfyui_dir(settings.comfyui.install_path)
        if found is None:
            out.warn(
                "no local ComfyUI folder found (looked for main.py, output/ or input/ in "
                + ", ".join(looked)
                + "); set comfyui.install_path or pass --comfyui-dir. Nothing was removed "
                "from any server."
            )
    report = clean_server(
        root,
        found,
        local_backends=local,
        dry_run=dry_run,
        prefix_root=settings.render.filename_prefix_root,
    )
    report.looked_at = looked
    for refused in report.refused:
        out.warn(refused)
    return report


ASSET_IDS_ARGUMENT = typer.Argument(..., help="Render ids, e.g. shot_01_v1_r002.")
UNDO_OPTION = typer.Option(False, "--undo", help="Remove the approval instead.")


def register(app: typer.Typer) -> None:
    """Add the ``assets`` group to ``app``."""
    group = typer.Typer(
        help="List, check and clean the rendered images of a project.", no_args_is_help=True
    )
    app.add_typer(group, name="assets")

    @command(group, "list", reads_settings=False)
    def list_cmd(project: Path = PROJECT_OPTION, json_out: bool = JSON_OPTION) -> None:
        """Every recorded render: shot, version, render, size, sha256, placeholder, active."""
        from storycore.assets import list_assets, plural
        from storycore.project import load_project

        out = Output(json_out)
        assets = list_assets(load_project(project))
        if json_out:
            out.json(
                {
                    "ok": True,
                    "assets": [{**dataclasses.asdict(a), "kind": a.kind} for a in assets],
                }
            )
            return
        if not assets:
            out.data(escape("No rendered images recorded yet."))
            return
        for a in assets:
            flags = ", ".join(
                flag
                for flag, on in (
                    ("active", a.active),
                    ("approved", a.approved),
                    ("placeholder", a.placeholder),
                    ("MISSING", not a.exists),
                )
                if on
            )
            out.data(
                escape(
                    f"{a.shot_id:<12} v{a.version} r{a.render:03d}  {human_size(a.size):>10}  "
                    f"{a.sha256[:12]}  {a.path}" + (f"  [{flags}]" if flags else "")
                )
            )
        active = sum(1 for a in assets if a.active)
        out.data(escape(f"{plural(len(assets), 'render')}, {active} active"))

    @command(group, "approve", reads_settings=False)
    def approve_cmd(
        asset_ids: list[str] = ASSET_IDS_ARGUMENT,
        project: Path = PROJECT_OPTION,
        undo: bool = UNDO_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Mark renders ASSET_IDS (e.g. shot_01_v1_r002, see `assets list`) approved: `assets
        clean` never removes them."""
        from storycore._lock import ProjectLock
        from storycore.errors import AssetError
        from storycore.manifest import set_approved
        from storycore.project import load_project, save_project

        out = Output(json_out)
        root = project.parent if project.name == "project.json" else project
        with ProjectLock(root, "assets approve"):
            loaded = load_project(project)
            unknown = set_approved(loaded, asset_ids, not undo)
            if unknown:
                raise AssetError(
                    f"no render with id {', '.join(unknown)}; nothing was changed",
                    where=str(loaded.root / "project.json"),
                    hint="`storycore assets list` shows every render id (shot_vN_rNNN)",
                )
            save_project(loaded)
        if json_out:
            out.json({"ok": True, "approved": not undo, "assets": asset_ids})
        else:
            verb = "no longer approved" if undo else "approved"
            out.data(escape(f"{', '.join(asset_ids)}: {verb}"))

    @command(group, "stats")
    def stats_cmd(project: Path = PROJECT_OPTION, json_out: bool = JSON_OPTION) -> None:
        """Counts and sizes per shot and per kind (final, placeholder, temporary, cache), and
        which temporary and cache files `assets clean` would remove now."""
        from storycore.assets import asset_stats, plan_clean, plural
        from storycore.errors import ConfigError
        from storycore.project import load_project

        out = Output(json_out)
        loaded = load_project(project)
        stats = asset_stats(loaded)
        policy: RetentionPolicy | None
        try:
            policy = _policy(loaded.root, None)
        except ConfigError as exc:
            out.warn(f"{exc.paragraph()} (so what `assets clean` would remove is not shown)")
            policy = None
        # The very plan `assets clean` follows, so the two never disagree.
        would_go = (
            [r for r in plan_clean(loaded, policy).removals if r.kind in ("temporary", "cache")]
            if policy is not None
            else []
        )
        if json_out:
            clean_now = {
                kind: {
                    "count": sum(1 for r in would_go if r.kind == kind),
                    "bytes": sum(r.bytes for r in would_go if r.kind == kind),
                }
                for kind in ("temporary", "cache")
            }
            out.json(
                {
                    "ok": True,
                    **dataclasses.asdict(stats),
                    "total_bytes": stats.total_bytes,
                    "clean_would_remove": clean_now if policy is not None else None,
                }
            )
            return
        notes = {
            "temporary": "partial downloads, interrupted writes",
            "cache": "storyboard thumbnails; safe to delete",
        }
        rows = [*stats.per_kind.items()]
        if stats.unknown.count:
            rows.append(("unknown", stats.unknown))
        for kind, totals in rows:
            note = f"  ({notes[kind]})" if kind in notes and totals.count else ""
            out.data(
                escape(
                    f"{kind:<12} {plural(totals.count, 'file'):<12} "
                    f"{human_size(totals.bytes):>10}{note}"
                )
            )
        if stats.missing:
            out.data(
                escape(
                    f"{plural(stats.missing, 'recorded render')} "
                    f"{'is' if stats.missing == 1 else 'are'} missing "
                    "(see `storycore assets verify`)"
                )
            )
        out.data(escape(f"{'total':<12} {'':<12} {human_size(stats.total_bytes):>10}"))
        for shot_id, kinds in sorted(stats.per_shot.items()):
            nouns = {"final": "final render", "placeholder": "placeholder"}
            parts = [
                f"{plural(t.count, nouns.get(k, k))} ({human_size(t.bytes)})"
                for k, t in kinds.items()
                if t.count
            ]
            out.data(escape(f"  {shot_id:<12} " + ", ".join(parts)))
        aged = stats.per_kind["temporary"].count + stats.per_kind["cache"].count
        if policy is not None and aged:
            out.data(
                escape(
                    f"`storycore assets clean` would remove {len(would_go)} of "
                    f"{plural(aged, 'temporary or cache file')} now "
                    f"({human_size(sum(r.bytes for r in would_go))}); "
                    f"it removes them {_age_rule(policy)}"
                )
            )

    @command(group, "verify", reads_settings=False)
    def verify_cmd(project: Path = PROJECT_OPTION, json_out: bool = JSON_OPTION) -> None:
        """Re-hash every render against the manifest; exit 7 if one is missing or changed."""
        from storycore.assets import plural, verify_assets
        from storycore.errors import AssetError
        from storycore.project import load_project

        out = Output(json_out)
        loaded = load_project(project)
        report = verify_assets(loaded)
        if json_out:
            out.json(
                {
                    "ok": report.clean,
                    "checked": report.checked,
                    "intact": report.ok,
                    "missing": [dataclasses.asdict(p) for p in report.missing],
                    "changed": [dataclasses.asdict(p) for p in report.changed],
                    "unknown": [dataclasses.asdict(f) for f in report.unknown],
                    "temporary": [dataclasses.asdict(f) for f in report.temporary],
                }
            )
            if not report.clean:
                raise typer.Exit(AssetError.exit_code)
            return
        out.data(
            escape(
                f"{report.ok} of {plural(report.checked, 'recorded render')} "
                f"{'is' if report.ok == 1 else 'are'} intact"
            )
        )
        for problem in report.problems:
            out.data(escape(f"  {problem.problem.upper():<8} {problem.path}: {problem.detail}"))
        for unknown in report.unknown:
            out.data(
                escape(f"  UNKNOWN  {unknown.path} ({unknown.reason}, {human_size(unknown.size)})")
            )
        if report.temporary:
            out.data(
                escape(
                    f"  {plural(len(report.temporary), 'temporary file')} "
                    "(`storycore assets clean` removes them once old enough)"
                )
            )
        if not report.clean:
            raise AssetError(
                f"{len(report.missing)} missing and "
                f"{plural(len(report.changed), 'changed or invalid render')}",
                where=str(loaded.root),
                hint="Run `storycore generate-images` to re-render them",
            )

    @command(group, "clean")
    def clean_cmd(
        project: Path = PROJECT_OPTION,
        dry_run: bool = DRY_RUN_OPTION,
        keep_newest: int | None = KEEP_NEWEST_OPTION,
        server: bool = SERVER_OPTION,
        comfyui_dir: Path | None = COMFYUI_DIR_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Apply the retention policy; the active render of every shot is always kept."""
        from storycore._lock import ProjectLock
        from storycore.assets import clean_assets, plural
        from storycore.errors import AssetError
        from storycore.project import load_project

        out = Output(json_out)
        root = project.parent if project.name == "project.json" else project
        lock = contextlib.nullcontext() if dry_run else ProjectLock(root, "assets clean")
        with lock:
            loaded = load_project(project)
            policy = _policy(loaded.root, keep_newest)
            report = clean_assets(loaded, policy, dry_run=dry_run)
            server_report = _server_side(loaded.root, comfyui_dir, dry_run, out) if server else None
        errors = report.errors + (server_report.errors if server_report else [])
        if json_out:
            body: dict[str, Any] = {
                "ok": not errors,
                "dry_run": dry_run,
                "policy": policy.model_dump(),
                "removed": [dataclasses.asdict(r) for r in report.removed],
                "freed_bytes": report.freed_bytes,
                "records_dropped": report.records_dropped,
                "kept_records": report.kept_records,
                "errors": report.errors,
            }
            if server_report is not None:
                body["server"] = {
                    **dataclasses.asdict(server_report),
                    "freed_bytes": server_report.freed_bytes,
                }
            out.json(body)
            if errors:
                raise typer.Exit(AssetError.exit_code)
            return
        verb = "Would remove" if dry_run else "Removed"
        for removal in report.removed:
            out.data(escape(f"  {removal.kind:<11} {removal.path}  ({removal.reason})"))
        out.data(
            escape(
                f"{verb} {plural(len(report.removed), 'project file')}, "
                f"{human_size(report.freed_bytes)}; "
                f"{plural(report.records_dropped, 'manifest record')} dropped, "
                f"{report.kept_records} kept"
            )
        )
        if server_report is not None:
            _print_server(out, server_report, verb)
        if errors:
            raise AssetError(
                f"{plural(len(errors), 'file')} could not be removed: " + "; ".join(errors[:5]),
                hint="Check the files' permissions and run the clean again",
            )


def _age_rule(policy: RetentionPolicy) -> str:
    """How ``assets clean`` ages temporary and cache files, in words."""
    rules = []
    if policy.temp_max_age_hours is not None:
        rules.append(f"once older than {policy.temp_max_age_hours:g} h")
    if policy.temp_max_total_mb is not None:
        rules.append(f"oldest first while they exceed {policy.temp_max_total_mb:g} MB")
    if not rules:
        return "never (assets.temp_max_age_hours and temp_max_total_mb are both off)"
    return ", and ".join(rules) + " (assets.temp_max_age_hours, assets.temp_max_total_mb)"


def _print_server(out: Output, report: ServerCleanReport, verb: str) -> None:
    from storycore.assets import plural

    if report.comfyui_dir is not None:
        for item in report.removed:
            out.data(escape(f"  server {item.folder:<7} {item.path}"))
        for item in report.skipped:
            out.data(escape(f"  kept   {item.folder:<7} {item.path} ({item.reason})"))
        out.data(
            escape(
                f"{verb} {plural(len(report.removed), 'file')} from {report.comfyui_dir}, "
                f"{human_size(report.freed_bytes)}"
            )
        )
    for left in report.remote:
        out.warn(
            f"{left.backend}: {report.note}. Left there: "
            f"{plural(len(left.prefixes), 'output prefix', 'output prefixes')} "
            f"({', '.join(left.prefixes[:5]) or 'none'}) and {plural(len(left.uploads), 'upload')} "
            f"({', '.join(left.uploads[:5]) or 'none'})"
        )
