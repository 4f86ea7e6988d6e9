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
from storycore.engine._events import EventSink, PanelFailed, PanelPlanned
from storycore.engine._prepare import build_jobs, load_templates
from storycore.engine._summary import PanelOutcome
from storycore.manifest import AssetRecord, asset_index
from storycore.panels import Panel
from storycore.project import Project
from storycore.workflows import GraphOptions

__all__ = ["CacheDecision", "cache_decision", "plan_board"]


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
    active = {
        shot_id: index.get(str(entry.get("active_asset", "")))
        for shot_id, entry in dict(project.data.get("shots_index") or {}).items()
        if isinstance(entry, dict)
    }
    outcomes: dict[str, PanelOutcome] = {}
    for job in jobs:
        decision = await asyncio.to_thread(
            cache_decision, project.root, active.get(job.shot_id), job.fingerprint, mock=None
        )
        p = job.panel
        emit(
            PanelPlanned(
                shot_id=p.shot_id,
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
            outcomes[p.shot_id] = PanelOutcome(p.shot_id, "skipped")
        else:
            outcomes[p.shot_id] = PanelOutcome(p.shot_id, "planned")
    for shot_id, err in failures.items():
        emit(PanelFailed(shot_id, err.message, where=err.where, hint=err.hint))
        outcomes[shot_id] = PanelOutcome(shot_id, "failed", error=err.paragraph())
    return [outcomes.get(p.shot_id, PanelOutcome(p.shot_id, "stopped")) for p in panels]
