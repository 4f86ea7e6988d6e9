"""The render cache's decision for one panel, and ``--dry-run``: the plan without a server.

:func:`cache_decision` says whether a panel's active render can be kept (same workflow
fingerprint, file intact) or must be rendered again, and why. The engine uses it before a run;
:func:`plan_board` uses it for ``generate-images --dry-run``, which starts no server, contacts
none and writes nothing: graphs are built for a core ComfyUI (a server that offers the
comfyui_controlnet_aux preprocessors builds preprocessed controls differently, so such panels
may render after all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storycore._fsutil import file_sha256
from storycore.config import Settings
from storycore.engine._events import EventSink, Notice, PanelFailed, PanelPlanned, PanelSkipped
from storycore.engine._jobs import PanelJob
from storycore.engine._persist import ProjectWriter
from storycore.engine._prepare import build_jobs, load_templates
from storycore.engine._summary import PanelOutcome
from storycore.engine._takes import ActiveTakes
from storycore.manifest import AssetRecord, active_assets, asset_index, records_by_key
from storycore.panels import Panel
from storycore.project import Project
from storycore.workflows import GraphOptions

__all__ = ["CacheDecision", "cache_decision", "find_cached", "plan_board", "skip_cached"]


@dataclass(frozen=True)
class CacheDecision:
    """``skip`` with the reason shown to the user; ``notice`` when the user should hear why an
    existing render is not kept (its file changed or vanished)."""

    skip: bool
    reason: str
    notice: str | None = None


def cache_decision(
    root: Path, record: AssetRecord | None, fingerprint: str, *, mock: bool | None
) -> CacheDecision:
    """Keep the active render when it was made from the same workflow and its file is intact.

    A placeholder is kept only when this run renders placeholders too (``mock``); ``None``
    means not known yet (a dry run), where a placeholder counts as to be rendered.
    Blocking (hashes the file): call it in a worker thread.
    """
    if record is None:
        return CacheDecision(False, "never rendered")
    if record.workflow_sha256 != fingerprint:
        return CacheDecision(False, "changed since its last render")
    if record.placeholder and not mock:
        return CacheDecision(False, "its image is a placeholder")
    path = root / record.path
    if not path.is_file():
        return CacheDecision(False, "its image is missing", f"{record.path} is missing")
    if file_sha256(path) != record.sha256:
        return CacheDecision(False, "its image changed on disk", f"{record.path} changed")
    return CacheDecision(True, "unchanged since its last render")


def find_cached(
    root: Path,
    active: AssetRecord | None,
    made: list[AssetRecord],
    fingerprint: str,
    *,
    mock: bool | None,
) -> tuple[CacheDecision, AssetRecord | None]:
    """The render cache's decision for one take, and the render it keeps: the shot's active
    record when it is this take, else any earlier render with the same cache key whose file is
    intact (``made``, newest first: a take made before, or the render of a prompt the person
    changed back). The notice is the active record's (its file changed or vanished).
    Blocking (hashes files): call it in a worker thread."""
    first = cache_decision(root, active, fingerprint, mock=mock)
    if first.skip:
        return first, active
    for record in made:
        if active is not None and record.asset_id == active.asset_id:
            continue
        decision = cache_decision(root, record, fingerprint, mock=mock)
        if decision.skip:
            return CacheDecision(True, "rendered before", first.notice), record
    return first, None


async def plan_board(
    settings: Settings,
    project: Project,
    panels: Sequence[Panel],
    options: GraphOptions,
    emit: EventSink,
) -> list[PanelOutcome]:
    """What ``generate-images`` would do for each panel: one :class:`PanelPlanned` each."""
    templates = load_templates(settings, project, None) if any(p.template for p in panels) else {}
    jobs, failures = await build_jobs(project, panels, options, None, templates)
    index = asset_index(project)
    active = {shot_id: index.get(asset) for shot_id, asset in active_assets(project).items()}
    made = records_by_key(index.values())
    outcomes: dict[str, PanelOutcome] = {}
    for job in jobs:
        shot_id = job.panel.shot_id
        decision, _ = await asyncio.to_thread(
            find_cached,
            project.root,
            active.get(shot_id),
            made.get((shot_id, job.fingerprint), []),
            job.fingerprint,
            mock=None,
        )
        p = job.panel
        emit(
            PanelPlanned(
                shot_id=p.key,
                action="skip" if decision.skip else "render",
                reason=decision.reason,
                positive=p.positive,
                negative=p.negative,
                seed=p.seed,
                width=p.width,
                height=p.height,
                steps=p.steps,
                cfg=p.cfg,
                sampler=p.sampler,
                checkpoint=p.checkpoint,
                template=p.template,
            )
        )
        if decision.skip:
            outcomes[p.key] = PanelOutcome(p.key, "skipped")
        else:
            outcomes[p.key] = PanelOutcome(p.key, "planned")
    for shot_id, err in failures.items():
        emit(PanelFailed(shot_id, err.message, where=err.where, hint=err.hint))
        outcomes[shot_id] = PanelOutcome(shot_id, "failed", error=err.paragraph())
    return [outcomes.get(p.key, PanelOutcome(p.key, "stopped")) for p in panels]


async def skip_cached(
    writer: ProjectWriter,
    jobs: list[PanelJob],
    *,
    force: bool,
    shown: Sequence[str],
    mock: bool,
    emit: EventSink,
    outcomes: dict[str, PanelOutcome],
) -> tuple[list[PanelJob], ActiveTakes]:
    """The jobs to render (a take whose render exists, same cache key and file intact, is
    kept: a ``skipped`` outcome and event), and the run's :class:`ActiveTakes`. ``shown`` are
    the cache keys of the takes the shots show now, as this run would make them: a shown take
    with one of these is current and stays shown. A kept take of a shot that shows a stale one
    is shown instead."""
    wanted: dict[str, set[str]] = {}
    for job in jobs:
        wanted.setdefault(job.panel.shot_id, set()).add(job.fingerprint)
    current = set(shown)
    for shot_id, keys in wanted.items():
        active = writer.active(shot_id)
        if active is not None and active.workflow_sha256 in current:
            keys.add(active.workflow_sha256)
    chooser = ActiveTakes(wanted)
    if force:
        return jobs, chooser
    keep: list[PanelJob] = []
    made = writer.records_by_key()
    for job in jobs:
        shot_id = job.panel.shot_id
        active = writer.active(shot_id)
        decision, record = await asyncio.to_thread(
            find_cached,
            writer.project.root,
            active,
            made.get((shot_id, job.fingerprint), []),
            job.fingerprint,
            mock=mock,
        )
        if decision.notice:
            emit(Notice("warning", f"{decision.notice}: rendering again"))
        if decision.skip and record is not None:
            if chooser.should_activate(active, record) and record != active:
                writer.activate(record)
            outcomes[job.shot_id] = PanelOutcome(
                job.shot_id, "skipped", path=record.path, placeholder=record.placeholder
            )
            emit(PanelSkipped(job.shot_id, decision.reason, record.path))
        else:
            keep.append(job)
    return keep, chooser
