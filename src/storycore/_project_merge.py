"""A person's edit of ``project.json`` merged with StoryCore's own changes (pure, no I/O).

While a render runs, StoryCore keeps ``project.json`` in memory and saves it now and then; a
person may edit the file meanwhile (a note, ``config.global_seed``, an anchor). A save that
finds the file changed since StoryCore last read or wrote it merges three versions instead of
overwriting: ``base`` (what StoryCore last read or wrote), ``ours`` (memory) and ``theirs``
(the file as the person left it).

What StoryCore changes in ``project.json`` (the fields it owns):

- ``asset_manifest.generated_images``: the records of its renders (appended; ``assets approve``
  sets ``approved``; ``assets clean`` drops records), matched by ``asset_id``;
- ``shots_index.<shot_id>``: ``status``, ``active_asset``, ``active_version``,
  ``last_render``, ``last_error``;
- ``generation_status.image_generation``; ``updated_at`` (the time of every save).

The rule, field by field: a value only one side changed takes that side's change; a value both
changed to different things keeps the person's, and the path is reported (StoryCore's value is
not saved). So everything StoryCore does not own is the person's, and a record StoryCore added
is kept unless the person changed the same field of it. A record the person deleted stays
deleted unless StoryCore changed it meanwhile (then it is a reported conflict and stays deleted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storycore._storyboard_check import json_path

__all__ = ["MISSING", "Conflict", "MergeResult", "merge_edit"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
_KEY = "asset_id"  # what identifies an item of a list of records


@dataclass(frozen=True)
class Conflict:
    """A value both sides changed: the person's was kept."""

    path: str
    kept: Any
    dropped: Any


@dataclass
class MergeResult:
    data: Any
    conflicts: list[Conflict] = field(default_factory=list)


def _keyed(items: Any) -> dict[str, Any] | None:
    """A list of records by ``asset_id`` (None when it is not such a list)."""
    if items is MISSING:
        return {}
    if not isinstance(items, list):
        return None
    out: dict[str, Any] = {}
    for item in items:
        key = item.get(_KEY) if isinstance(item, dict) else None
        if not isinstance(key, str) or key in out:
            return None
        out[key] = item
    return out


class _Merger:
    def __init__(self) -> None:
        self.conflicts: list[Conflict] = []

    def merge(self, base: Any, ours: Any, theirs: Any, path: tuple[str | int, ...]) -> Any:
        if ours == base:
            return theirs
        if theirs in (base, ours):
            return ours
        if isinstance(ours, dict) and isinstance(theirs, dict):
            return self._objects(base if isinstance(base, dict) else {}, ours, theirs, path)
        if isinstance(ours, list) and isinstance(theirs, list):
            merged = self._records(base, ours, theirs, path)
            if merged is not None:
                return merged
        self.conflicts.append(Conflict(json_path(path), theirs, ours))
        return theirs

    def _objects(
        self,
        base: dict[str, Any],
        ours: dict[str, Any],
        theirs: dict[str, Any],
        path: tuple[str | int, ...],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in [*theirs, *(k for k in ours if k not in theirs)]:
            value = self.merge(
                base.get(key, MISSING),
                ours.get(key, MISSING),
                theirs.get(key, MISSING),
                (*path, key),
            )
            if value is not MISSING:
                out[key] = value
        return out

    def _records(
        self, base: Any, ours: list[Any], theirs: list[Any], path: tuple[str | int, ...]
    ) -> list[Any] | None:
        """Lists of records merged by ``asset_id``, in the person's order, StoryCore's new
        records after them (None when the lists are not lists of records)."""
        base_by, ours_by, theirs_by = _keyed(base), _keyed(ours), _keyed(theirs)
        if base_by is None or ours_by is None or theirs_by is None:
            return None
        out: list[Any] = []
        for key in [*theirs_by, *(k for k in ours_by if k not in theirs_by)]:
            value = self.merge(
                base_by.get(key, MISSING),
                ours_by.get(key, MISSING),
                theirs_by.get(key, MISSING),
                (*path, len(out)),
            )
            if value is not MISSING:
                out.append(value)
        return out


def merge_edit(base: Any, ours: Any, theirs: Any) -> MergeResult:
    """``theirs`` (a person's edit of ``base``) with ``ours`` (StoryCore's changes to ``base``)
    applied wherever the person did not change the same value."""
    merger = _Merger()
    data = merger.merge(base, ours, theirs, ())
    return MergeResult(data, merger.conflicts)
