"""What ``generate-images`` shows: live progress, the plan of a dry run, the closing summary.

Progress, per-panel lines and notices go to stderr (they are for the person watching); the
summary table, the throughput line and a dry run's plan are the command's result, on stdout.
With ``--json`` every engine event is one JSON line on stdout and the summary is the last line.
"""

from __future__ import annotations

import contextlib
from typing import Any

from storycore._text import plural
from storycore.cli._common import Output, shown
from storycore.errors import EXIT_PLACEHOLDERS

__all__ = ["JsonView", "RichView", "exit_code_for", "print_plan", "print_summary"]


def exit_code_for(summary: Any, *, asked_for_mock: bool) -> int:
    """The summary's exit code, except that placeholders asked for with ``--mock`` are a
    success (0) unless something failed."""
    code = int(summary.exit_code)
    if asked_for_mock and code == EXIT_PLACEHOLDERS and not summary.failed:
        return 0
    return code


def _short(seconds: float) -> str:
    """``3.1``, or ``0.04`` where one decimal would say 0.0."""
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else ""


class JsonView:
    """One JSON line per engine event (sampler steps included, node-count ticks left out)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def handle(self, event: Any) -> None:
        from storycore.engine import PanelProgress, event_to_dict

        if isinstance(event, PanelProgress) and event.step is None:
            return
        self.out.json(event_to_dict(event))

    def close(self) -> None:
        return None


class RichView:
    """An overall bar with ETA and, per running panel, a bar that follows the sampler's steps
    and names the node running now; a line on stderr per notable event."""

    def __init__(self, out: Output) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.out = out
        self.err = out.err_console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
            disable=out.quiet or not self.err.is_terminal,
        )
        self.overall: Any = None
        self.panels: dict[str, Any] = {}
        self.previewed: set[str] = set()  # running panels whose preview file is there
        self.preview_said = False
        self.planned: list[Any] = []
        self.started = False

    def _say(self, text: str, *, notice: bool = True) -> None:
        """A line on stderr; a plain notice is dropped with ``--quiet``."""
        if notice and self.out.quiet:
            return
        self.err.print(text)

    def handle(self, event: Any) -> None:
        from storycore import engine as e
        from storycore.engine import PanelPreview

        if isinstance(event, PanelPreview):
            self._show_preview(event)
        elif isinstance(event, e.RunStarted):
            self.progress.start()
            self.started = True
            kind = "MOCK (placeholders)" if event.mock else ", ".join(event.backends)
            self._say(
                f"Rendering {event.to_render} of {plural(event.total, 'panel')} of "
                f"{shown(event.project)} on {shown(kind)}"
            )
            self.overall = self.progress.add_task("panels", total=max(event.to_render, 1))
        elif isinstance(event, e.Notice):
            style = {"info": "", "warning": "bold yellow", "error": "bold red"}[event.level]
            text = shown(event.text)
            self._say(f"[{style}]{text}[/]" if style else text, notice=event.level == "info")
        elif isinstance(event, e.BackendChanged):
            detail = f": {shown(event.detail)}" if event.detail else ""
            self._say(f"backend {shown(event.url)} {event.state}{detail}")
        elif isinstance(event, e.PanelSubmitted):
            self._panel_task(event.shot_id)
        elif isinstance(event, e.PanelProgress):
            self._show_progress(event)
        elif isinstance(event, e.PanelDone):
            self._finish_panel(event.shot_id)
            badge = " [yellow]PLACEHOLDER[/]" if event.placeholder else ""
            self._say(
                f"[green]done[/] {shown(event.shot_id)} -> {shown(event.path)} "
                f"({_panel_time(event.execution_s, event.queued_s, event.seconds)}){badge}"
            )
        elif isinstance(event, e.PanelSkipped):
            self._say(f"[dim]skip[/] {shown(event.shot_id)}: {shown(event.reason)}")
        elif isinstance(event, e.PanelFailed):
            if not event.will_retry:
                self._finish_panel(event.shot_id)
            label = "[yellow]retry[/]" if event.will_retry else "[red]failed[/]"
            where = f" ({shown(event.where)})" if event.where else ""
            self._say(f"{label} {shown(event.shot_id)}{where}: {shown(event.error)}", notice=False)
        elif isinstance(event, e.PanelPlanned):
            self.planned.append(event)

    def _show_preview(self, event: Any) -> None:
        """The first preview of a run gets one line (where the files are); after that a running
        panel's bar says "preview ready", never a line per frame."""
        if not self.preview_said:
            self.preview_said = True
            self._say(
                f"[dim]preview ready[/] {shown(event.shot_id)} -> {shown(event.path)} "
                "(each running panel's latest preview, updated as it renders)"
            )
        if event.shot_id in self.panels:
            self.previewed.add(event.shot_id)  # its bar says so from the next step on

    def _label(self, label: str) -> str:
        suffix = " [dim]preview ready[/]"
        return label if label.endswith(suffix) else label + suffix

    def _show_progress(self, event: Any) -> None:
        task = self._panel_task(event.shot_id)
        node = f" {shown(event.node_class)}" if event.node_class else ""
        label = f"  {shown(event.shot_id)}{node}"
        if event.shot_id in self.previewed:
            label = self._label(label)
        if event.steps:
            self.progress.update(task, description=label, completed=event.step, total=event.steps)
        else:
            self.progress.update(task, description=label)

    def _panel_task(self, shot_id: str) -> Any:
        if shot_id not in self.panels:
            # No total until the sampler reports its steps: loaders show as "working".
            self.panels[shot_id] = self.progress.add_task(f"  {shown(shot_id)}", total=None)
        return self.panels[shot_id]

    def _finish_panel(self, shot_id: str) -> None:
        self.previewed.discard(shot_id)
        task = self.panels.pop(shot_id, None)
        if task is not None:
            self.progress.remove_task(task)
        if self.overall is not None:
            self.progress.advance(self.overall)

    def close(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self.progress.stop()


def _panel_time(execution: float | None, queued: float | None, seconds: float) -> str:
    """``3.1 s on the server, 0.4 s queued``; the whole trip when the server did not say."""
    if execution is None:
        return f"{seconds:.1f} s"
    text = f"{execution:.1f} s on the server"
    if queued is not None and queued >= 0.05:
        text += f", {queued:.1f} s queued"
    return text


def print_plan(out: Output, planned: list[Any]) -> None:
    """A dry run's plan: one block per panel, on stdout."""
    for p in planned:
        verb = "[dim]skip[/]  " if p.action == "skip" else "[bold]render[/]"
        out.data(f"{verb} {shown(p.shot_id)}: {shown(p.reason)}")
        model = shown(p.checkpoint) + (f", template {shown(p.template)}" if p.template else "")
        out.data(
            f"        {p.width}x{p.height}, seed {p.seed}, {p.steps} steps, cfg {p.cfg:g}, "
            f"{shown(p.sampler)}, {model}"
        )
        out.data(f"        prompt: {shown(p.positive)}")
        if p.negative:
            out.data(f"        negative: {shown(p.negative)}")


def print_summary(out: Output, summary: Any, code: int, *, asked_for_mock: bool) -> None:
    """The table and throughput (stdout), then why the exit code is what it is (stderr)."""
    from rich.table import Table

    counts = summary.counts
    if summary.dry_run:
        would = counts["planned"]
        out.data(
            f"dry run: {plural(would, 'panel')} would render, {counts['skipped']} would be "
            f"skipped (unchanged), {counts['failed']} cannot be built; nothing was started "
            "or written"
        )
        return
    table = Table("shot", "status", "server", "queued", "file / error", box=None, pad_edge=False)
    for o in summary.outcomes:
        server = _seconds(o.execution_s if o.execution_s is not None else o.seconds)
        detail = o.path or o.error or o.reason or ""
        status = "skipped (placeholder)" if o.status == "skipped" and o.placeholder else o.status
        table.add_row(shown(o.shot_id), status, server, _seconds(o.queued_s), shown(detail))
    out.console.print(table)
    finished = summary.finished
    line = (
        f"{counts['rendered']} rendered, {counts['skipped']} skipped (unchanged), "
        f"{counts['failed']} failed, {plural(counts['placeholder'], 'placeholder')}"
        + (f", {counts['stopped']} not started" if counts["stopped"] else "")
    )
    out.data(line)
    if finished and summary.seconds_per_panel:
        out.data(
            f"{plural(finished, 'panel')} in {summary.render_seconds:.1f} s, "
            f"{_short(summary.seconds_per_panel)} s per panel, "
            f"{summary.panels_per_hour:,.0f} per hour"
        )
    out.info(f"images: {shown(str(summary.project / 'assets' / 'images' / 'generated'))}")
    _explain_exit(out, summary, code, asked_for_mock=asked_for_mock)


def _explain_exit(out: Output, summary: Any, code: int, *, asked_for_mock: bool) -> None:
    counts = summary.counts
    shown = f" (exit code {code})" if code else ""
    earlier = summary.placeholder_panels - counts["placeholder"]
    if asked_for_mock and summary.placeholder_panels:
        out.info(
            f"{plural(summary.placeholder_panels, 'panel')} hold placeholder frames, as asked "
            "with --mock"
        )
    elif counts["placeholder"]:
        out.warn(
            "these are PLACEHOLDER frames from the built-in emulator, not real renders; start "
            f"ComfyUI and run again to replace them{shown}"
        )
    elif earlier:
        out.warn(
            f"{plural(earlier, 'panel is a placeholder', 'panels are placeholders')} from an "
            f"earlier run; start ComfyUI and run again{shown}"
        )
    if counts["failed"]:
        out.warn(f"{plural(counts['failed'], 'panel')} failed; see the errors above{shown}")
    elif summary.stopped and counts["stopped"]:
        out.warn(f"stopped before {plural(counts['stopped'], 'panel')} could start{shown}")
