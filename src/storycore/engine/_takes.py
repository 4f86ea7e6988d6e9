"""Takes: which renders of each shot a run makes, and which one the board shows.

A *take* is one render of a shot with its own seed: take ``k`` uses the shot's seed plus
``k - 1`` (:func:`storycore.panels.take_seed`), so takes are different images and each can be
made again exactly. What a run renders (:func:`plan_takes`):

- ``--takes N``: takes 1..N of every selected shot (the render cache skips those already made:
  a rerun renders only the missing ones);
- ``--new-takes N``: N takes after each shot's highest take (for the same storyboard version);
- ``--rejected``: only shots that want a new take (no take yet, or the active one rejected),
  one new take each unless ``--new-takes`` says more;
- ``--approved`` (with a profile, usually ``final``: "promote"): each shot's approved take again,
  with that take's number and seed, at the profile's settings, so the final frame matches the
  chosen draft. A shot with no approved take is skipped and said so.

Which take the board shows (:class:`ActiveTakes`): a new render becomes the shot's active asset
unless the shot already shows a current take of this run's kind (same profile and storyboard,
so a take the person picked); among takes this run made active, the lowest take number wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from storycore.manifest import AssetRecord
from storycore.panels import Panel, take_seed

if TYPE_CHECKING:
    from storycore.config import Settings
    from storycore.engine._request import RenderRequest
    from storycore.project import Project

__all__ = [
    "ActiveTakes",
    "TakePlan",
    "TakeRequest",
    "plan_run",
    "plan_takes",
    "run_order",
    "shown_takes",
]


@dataclass(frozen=True)
class TakeRequest:
    """The take flags of one run (see the module's text)."""

    takes: int = 1
    new_takes: int = 0
    approved: bool = False
    rejected: bool = False


@dataclass
class TakePlan:
    """The panels to build (one per take), and the shots left out with why; for a whole run
    (:func:`plan_run`) also the summary's order and the shown takes to look up."""

    panels: list[Panel] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    references: list[Panel] = field(default_factory=list)


def plan_run(settings: Settings, project: Project, request: RenderRequest) -> TakePlan:
    """A run's panels: the selected shots with the request's profile, one panel per take to
    render; the summary's order; and (:func:`shown_takes`) the takes the shots show now as this
    run would make them, only to learn whether each is still current (never rendered).
    Blocking (reference images are checked on disk): call it in a worker thread."""
    from storycore._profiles import resolve_profile
    from storycore.manifest import active_assets, records
    from storycore.panels import panels_from_project

    profile = (
        (request.profile, resolve_profile(settings, request.profile)) if request.profile else None
    )
    shots = panels_from_project(project, settings, list(request.shots) or None, profile)
    takes = request.takes or (profile[1].takes if profile else None) or 1
    made, active = records(project), active_assets(project)
    plan = plan_takes(
        shots,
        made,
        active,
        TakeRequest(takes, request.new_takes, request.approved, request.rejected),
    )
    plan.order = run_order(shots, plan.panels, plan.skipped)
    if not request.approved:
        plan.references = shown_takes(shots, plan.panels, made, active)
    return plan


def _needs_take(records: Sequence[AssetRecord], active_id: str | None) -> bool:
    active = next((r for r in records if r.asset_id == active_id), None)
    return active is None or active.rejected


def _approved_take(records: Sequence[AssetRecord], active_id: str | None) -> AssetRecord | None:
    approved = [r for r in records if r.approved and not r.rejected]
    for record in approved:
        if record.asset_id == active_id:
            return record
    return max(approved, key=lambda r: (r.version, r.render), default=None)


def plan_takes(
    panels: Sequence[Panel],
    records: Iterable[AssetRecord],
    active: dict[str, str],
    request: TakeRequest,
) -> TakePlan:
    """One panel per take to render, in board order (a shot's takes together). ``records`` are
    the manifest's; ``active`` maps shot ids to their active asset id."""
    by_shot: dict[str, list[AssetRecord]] = {}
    for record in records:
        by_shot.setdefault(record.shot_id, []).append(record)
    plan = TakePlan()
    new_takes = max(request.new_takes, 1 if request.rejected else 0)
    for panel in panels:
        mine = by_shot.get(panel.shot_id, [])
        active_id = active.get(panel.shot_id)
        if request.rejected and not _needs_take(mine, active_id):
            plan.skipped[panel.shot_id] = "its active take is not rejected"
            continue
        if request.approved:
            chosen = _approved_take(mine, active_id)
            if chosen is None:
                plan.skipped[panel.shot_id] = "no approved take to render again"
                continue
            seed = chosen.seed if chosen.seed is not None else take_seed(panel.seed, chosen.take)
            plan.panels.append(replace(panel, take=chosen.take, seed=seed))
            continue
        if new_takes:
            highest = max((r.take for r in mine if r.version == panel.version), default=0)
            numbers = range(highest + 1, highest + 1 + new_takes)
        else:
            numbers = range(1, request.takes + 1)
        plan.panels.extend(
            replace(panel, take=k, seed=take_seed(panel.seed, k)) if k != 1 else panel
            for k in numbers
        )
    return plan


def shown_takes(
    shots: Sequence[Panel],
    panels: Sequence[Panel],
    records: Iterable[AssetRecord],
    active: dict[str, str],
) -> list[Panel]:
    """For each shot whose active take this run does not render, that take as this run would
    make it (its take number and seed, this run's profile): its cache key tells whether the
    take the board shows is still current (the person's pick stays) or stale (gives way)."""
    by_id = {r.asset_id: r for r in records}
    planned = {(p.shot_id, p.take) for p in panels}
    rendered = {p.shot_id for p in panels}
    out: list[Panel] = []
    for shot in shots:
        record = by_id.get(active.get(shot.shot_id, ""))
        if (
            record is None
            or shot.shot_id not in rendered
            or (shot.shot_id, record.take) in planned
            or record.version != shot.version
        ):
            continue
        seed = take_seed(shot.seed, record.take)
        out.append(replace(shot, take=record.take, seed=seed) if record.take != 1 else shot)
    return out


def run_order(
    shots: Sequence[Panel], panels: Sequence[Panel], skipped: dict[str, str]
) -> list[str]:
    """The keys of a run's summary in board order: each shot's takes, or the shot itself when
    it was left out."""
    keys: dict[str, list[str]] = {}
    for panel in panels:
        keys.setdefault(panel.shot_id, []).append(panel.key)
    order: list[str] = []
    for shot in shots:
        if shot.shot_id in skipped:
            order.append(shot.shot_id)
        else:
            order.extend(keys.get(shot.shot_id, []))
    return order


class ActiveTakes:
    """Decides, as each render lands, whether it becomes its shot's active asset.

    ``wanted`` holds, per shot, the cache keys (workflow fingerprints) of every take this run
    renders or keeps: an active record with one of them is a current take, maybe one the person
    picked, and stays; anything else (no active record, a rejected or placeholder one, one of an
    older storyboard or another profile) gives way."""

    def __init__(self, wanted: dict[str, set[str]]) -> None:
        self.wanted = wanted
        self._made_active: dict[str, int] = {}  # shot -> take this run made active

    def should_activate(self, active: AssetRecord | None, new: AssetRecord) -> bool:
        shot = new.shot_id
        if _gives_way(active, new, self.wanted.get(shot, set())):
            yes = True
        else:
            assert active is not None
            made = self._made_active.get(shot)
            yes = made is not None and made == active.take and new.take < made
        if yes:
            self._made_active[shot] = new.take
        return yes


def _gives_way(active: AssetRecord | None, new: AssetRecord, current: set[str]) -> bool:
    """Whether the shot's ``active`` record gives way to ``new`` whatever was made active in
    this run: there is none, it was rejected, it is a placeholder and ``new`` is not, ``new``
    is the same take made again (``--force``, or its file was lost), or it is no take of this
    run's kind (not one of the ``current`` cache keys)."""
    if active is None or active.rejected or active.asset_id == new.asset_id:
        return True
    if active.placeholder and not new.placeholder:
        return True
    return active.workflow_sha256 == new.workflow_sha256 or active.workflow_sha256 not in current
