"""``storycore assets clean``: apply the retention policy to a project's stored renders.

Order of work, so that an interruption at any point leaves a loadable project whose manifest
records all point at existing files:

1. decide (:func:`plan_clean`): which records go, which orphan, temporary and cache files go;
2. write ``project.json`` without the dropped records (atomically), *then*
3. delete the files. A crash during 3 leaves only unlisted files behind, which the next clean
   removes as orphans.

A shot's active render is never removed, nor any file a kept record still names. Nothing is
deleted through a link that leaves the project (``assets``, the generated folder, a shot
folder; renders are not written through one either): such a file is reported in ``errors``
and its record stays in the manifest.

The cache (``.storycore/cache``: the thumbnail database ``thumbs.sqlite`` with its ``-wal`` and
``-shm`` companions) is aged out as one unit, by the time it was last written: it goes whole
(companions first, so no write-ahead log outlives its database) once older than
``temp_max_age_hours``, or, oldest first together with the temporary files, while they exceed
``temp_max_total_mb``. The next storyboard refresh builds it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from storycore._fsutil import safe_join
from storycore._text import plural
from storycore.assets._inventory import (
    AssetEntry,
    StoredFile,
    active_asset_ids,
    cache_files,
    list_assets,
    manifest_entries,
    temporary_files,
    unknown_files,
)
from storycore.assets._policy import RetentionPolicy
from storycore.manifest import GENERATED_DIR, MANIFEST_KEY

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "CacheUnit",
    "CleanPlan",
    "CleanReport",
    "Removal",
    "cache_units",
    "clean_assets",
    "plan_clean",
    "select_records",
    "select_temporary",
]

RemovalKind = Literal["final", "placeholder", "orphan", "temporary", "cache"]
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class _Aged(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def reason(self) -> str: ...


_AgedT = TypeVar("_AgedT", bound=_Aged)


@dataclass(frozen=True)
class CacheUnit:
    """One cache file with its SQLite companions (``x.sqlite``, ``-wal``, ``-shm``): removed
    together, aged by the newest of them, companions listed first."""

    files: tuple[StoredFile, ...]

    @property
    def path(self) -> str:
        return self.files[-1].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def mtime(self) -> float:
        return max(f.mtime for f in self.files)

    @property
    def reason(self) -> str:
        return "cache"


def cache_units(files: Iterable[StoredFile]) -> list[CacheUnit]:
    """Pure: group cache files with their SQLite companions."""
    groups: dict[str, list[StoredFile]] = {}
    for item in files:
        base = item.path
        for suffix in _SQLITE_COMPANIONS:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        groups.setdefault(base, []).append(item)
    return [
        CacheUnit(tuple(sorted(items, key=lambda f: (f.path == base, f.path))))
        for base, items in sorted(groups.items())
    ]


@dataclass(frozen=True)
class Removal:
    """One file (and, for a render, its record) that the clean removes or would remove."""

    path: str
    kind: RemovalKind
    reason: str
    bytes: int
    asset_id: str | None = None
    shot_id: str | None = None


@dataclass
class CleanPlan:
    drop_indexes: set[int] = field(default_factory=set)
    removals: list[Removal] = field(default_factory=list)
    kept_records: int = 0


@dataclass
class CleanReport:
    """What a clean removed (or, with ``dry_run``, would remove) and how much space it freed."""

    dry_run: bool
    removed: list[Removal] = field(default_factory=list)
    kept_records: int = 0
    records_dropped: int = 0
    manifest_updated: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(r.bytes for r in self.removed)


def select_records(
    assets: Iterable[AssetEntry], policy: RetentionPolicy
) -> dict[str, tuple[RemovalKind, str]]:
    """Pure: which asset ids the policy removes, and why. ``assets`` are oldest first.

    - the active render of a shot, and every approved render, is always kept;
    - placeholders go once the shot has a real render whose file exists;
    - beyond that, only the ``keep_newest`` newest renders of each shot stay (placeholders and
      real renders counted together, newest by manifest order).
    """
    by_shot: dict[str, list[AssetEntry]] = {}
    for asset in assets:
        by_shot.setdefault(asset.shot_id, []).append(asset)
    drop: dict[str, tuple[RemovalKind, str]] = {}
    for shot_id, items in by_shot.items():
        has_real = any(a.exists and not a.placeholder for a in items)
        newest_first = list(reversed(items))
        for rank, asset in enumerate(newest_first):
            if asset.active or asset.approved:
                continue
            kind: RemovalKind = asset.kind
            if asset.placeholder and policy.remove_placeholders and has_real:
                drop[asset.asset_id] = (kind, f"placeholder; {shot_id} has a real render")
            elif policy.keep_newest is not None and rank >= policy.keep_newest:
                drop[asset.asset_id] = (
                    kind,
                    f"not among the {plural(policy.keep_newest, 'newest render')} of {shot_id}",
                )
    return drop


def select_temporary(
    files: Iterable[_AgedT], policy: RetentionPolicy, now: float
) -> list[tuple[_AgedT, str]]:
    """Pure: temporary files (or cache units) older than the maximum age, then the oldest until
    the rest fits.

    Files modified in the last five minutes are never picked by the size cap (a download may
    still be writing them).
    """
    remaining = sorted(files, key=lambda f: f.mtime)
    picked: list[tuple[_AgedT, str]] = []
    max_age = policy.temp_max_age_s
    if max_age is not None:
        still: list[_AgedT] = []
        for item in remaining:
            if now - item.mtime > max_age:
                picked.append((item, f"{item.reason}, older than {policy.temp_max_age_hours:g} h"))
            else:
                still.append(item)
        remaining = still
    cap = policy.temp_max_total_bytes
    if cap is not None:
        total = sum(f.size for f in remaining)
        for item in remaining:
            if total <= cap:
                break
            if now - item.mtime < 300:
                continue
            picked.append((item, f"{item.reason}, over the {policy.temp_max_total_mb:g} MB cap"))
            total -= item.size
    return picked


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_clean(project: Project, policy: RetentionPolicy, *, now: float | None = None) -> CleanPlan:
    """Decide what a clean removes; touches nothing."""
    now = time.time() if now is None else now
    plan = CleanPlan()
    assets = list_assets(project)
    drop = select_records(assets, policy)
    active = active_asset_ids(project)
    kept_paths: set[str] = set()
    for entry in manifest_entries(project):
        record = entry.record
        if record is None or entry.problem or record.asset_id not in drop:
            plan.kept_records += 1
            if record is not None:
                kept_paths.update((record.path, record.sidecar_path))
            continue
        if record.asset_id in active:  # belt and braces: select_records already skips these
            plan.kept_records += 1
            kept_paths.update((record.path, record.sidecar_path))
            continue
        plan.drop_indexes.add(entry.index)
    for entry in manifest_entries(project):
        record = entry.record
        if entry.index not in plan.drop_indexes or record is None:
            continue
        kind, reason = drop[record.asset_id]
        for rel in (record.path, record.sidecar_path):
            if rel in kept_paths:
                continue
            plan.removals.append(
                Removal(
                    path=rel,
                    kind=kind,
                    reason=reason,
                    bytes=_file_bytes(project.root / rel),
                    asset_id=record.asset_id,
                    shot_id=record.shot_id,
                )
            )
    if policy.remove_orphans:
        grace = policy.orphan_grace_minutes * 60.0
        for orphan in unknown_files(project):
            if orphan.reason == "orphan render" and now - orphan.mtime >= grace:
                plan.removals.append(
                    Removal(orphan.path, "orphan", "render file no record names", orphan.size)
                )
    aged: list[StoredFile | CacheUnit] = [
        *temporary_files(project),
        *cache_units(cache_files(project)),
    ]
    for item, reason in select_temporary(aged, policy, now):
        if isinstance(item, CacheUnit):
            plan.removals += [Removal(f.path, "cache", reason, f.size) for f in item.files]
        else:
            plan.removals.append(Removal(item.path, "temporary", reason, item.size))
    return plan


def _drop_records(project: Project, indexes: set[int]) -> None:
    manifest = project.data["asset_manifest"]
    items = manifest[MANIFEST_KEY]
    manifest[MANIFEST_KEY] = [item for i, item in enumerate(items) if i not in indexes]


def _prune_empty_dirs(root: Path, folders: Mapping[Path, None]) -> None:
    base = root / GENERATED_DIR
    for folder in folders:
        current = folder
        while current != base and base in current.parents:
            try:
                os.rmdir(current)
            except OSError:
                break
            current = current.parent


def _contained(root: Path, rel: str) -> Path:
    """``root/rel``, refusing (``ValueError``) a path that is not a safe relative path or whose
    real path (links followed: ``assets``, the generated folder, a shot folder) leaves the
    project."""
    return safe_join(root, *PurePosixPath(rel).parts)


def _refuse_uncontained(project: Project, plan: CleanPlan, report: CleanReport) -> None:
    """Take out of ``plan`` every removal that would leave the project, and keep the records of
    those renders: a record is dropped only when its files can be removed."""
    kept_ids: set[str] = set()
    safe: list[Removal] = []
    for removal in plan.removals:
        try:
            _contained(project.root, removal.path)
        except ValueError:
            report.errors.append(f"{removal.path}: resolves outside the project; left alone")
            if removal.asset_id is not None:
                kept_ids.add(removal.asset_id)
            continue
        safe.append(removal)
    plan.removals = [r for r in safe if r.asset_id is None or r.asset_id not in kept_ids]
    for entry in manifest_entries(project):
        record = entry.record
        if record is not None and record.asset_id in kept_ids and entry.index in plan.drop_indexes:
            plan.drop_indexes.discard(entry.index)
            plan.kept_records += 1


def clean_assets(
    project: Project, policy: RetentionPolicy, *, dry_run: bool = False, now: float | None = None
) -> CleanReport:
    """Apply ``policy`` to ``project``: save the trimmed manifest first, then delete files.

    With ``dry_run`` nothing is written or deleted; the report says what would go. Failures to
    delete single files are collected in ``errors``, not raised.
    """
    from storycore.project import save_project

    plan = plan_clean(project, policy, now=now)
    report = CleanReport(dry_run=dry_run)
    _refuse_uncontained(project, plan, report)
    report.kept_records = plan.kept_records
    report.records_dropped = len(plan.drop_indexes)
    if dry_run:
        report.removed = list(plan.removals)
        return report
    if plan.drop_indexes:
        _drop_records(project, plan.drop_indexes)
        save_project(project)
        report.manifest_updated = True
    touched: dict[Path, None] = {}
    for removal in plan.removals:
        try:  # checked again: the folders may have changed since the plan
            path = _contained(project.root, removal.path)
        except ValueError:
            report.errors.append(f"{removal.path}: resolves outside the project; left alone")
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            report.removed.append(dataclasses.replace(removal, bytes=0))
            continue
        except OSError as exc:
            report.errors.append(f"{removal.path}: {exc.strerror or exc}")
            continue
        report.removed.append(removal)
        touched[path.parent] = None
    with contextlib.suppress(OSError):
        _prune_empty_dirs(project.root, touched)
    return report
