"""Everything a render writes into the project, in an order that survives any crash.

For each finished panel:

1. the image and its sidecar are written atomically (``_outputs.store_render``);
2. the journal gets ``done`` with the record's path (fsynced): the panel is now durable;
3. the record joins the in-memory manifest, and ``project.json`` is saved atomically by a
   background saver at most once per ``save_interval`` (and always at the end of the run).

Rewriting a 2000-panel ``project.json`` after every panel would cost more than rendering on a
fast server, so saves are coalesced; a crash between 2 and 3 loses nothing, because the next run
adopts every ``done`` record that the manifest lacks from its sidecar (:meth:`adopt_unrecorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path, PurePosixPath

from storycore._fsutil import file_sha256
from storycore.journal import Journal
from storycore.manifest import (
    AssetRecord,
    add_record,
    asset_index,
    next_render_number,
    set_shot_status,
)
from storycore.project import Project, save_project

__all__ = ["ProjectWriter"]


class ProjectWriter:
    """Serialises the engine's writes to one project (one writer per run)."""

    def __init__(self, project: Project, journal: Journal, save_interval: float = 1.0) -> None:
        self.project = project
        self.journal = journal
        self.save_interval = save_interval
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._renders: dict[tuple[str, int], int] = {}
        self._saver: asyncio.Task[None] | None = None
        self._index = asset_index(project)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> ProjectWriter:
        self._saver = asyncio.create_task(self._save_loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        await self.flush()

    async def _save_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.save_interval)
            await self.flush()

    async def flush(self) -> None:
        """Save ``project.json`` now if anything changed."""
        async with self._lock:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            await asyncio.to_thread(save_project, self.project)

    def mark_dirty(self) -> None:
        self._dirty.set()

    # ------------------------------------------------------------------ records
    def active(self, shot_id: str) -> AssetRecord | None:
        """The shot's active record (an index, not a scan of the manifest)."""
        entry = self.project.data.get("shots_index", {}).get(shot_id)
        if not isinstance(entry, dict):
            return None
        return self._index.get(str(entry.get("active_asset", "")))

    async def next_render(self, shot_id: str, version: int) -> int:
        """The next free render number of a shot/version (reserved for the caller)."""
        key = (shot_id, version)
        async with self._lock:
            if key not in self._renders:
                self._renders[key] = await asyncio.to_thread(
                    next_render_number, self.project, shot_id, version
                )
            else:
                self._renders[key] += 1
            return self._renders[key]

    async def add(self, record: AssetRecord) -> None:
        """Journal the finished panel (durable), then add it to the manifest (saved soon)."""
        await asyncio.to_thread(
            self.journal.append,
            "done",
            prompt_id=record.prompt_id,
            asset_id=record.asset_id,
            shot_id=record.shot_id,
            path=record.path,
            sha256=record.sha256,
        )
        async with self._lock:
            add_record(self.project, record)
            self._index[record.asset_id] = record
        self.mark_dirty()

    def set_status(self, shot_id: str, status: str, *, error: str | None = None) -> None:
        set_shot_status(self.project, shot_id, status, error=error)
        self.mark_dirty()

    def adopt_unrecorded(self) -> list[AssetRecord]:
        """Records the journal says are done but the manifest lacks (a crash before the save),
        read back from their sidecars when the image still has the recorded sha256."""
        adopted: list[AssetRecord] = []
        for event in self.journal.events():
            if event["event"] != "done" or not isinstance(event.get("path"), str):
                continue
            if event.get("asset_id") in self._index:
                continue
            record = _read_sidecar(self.project.root, event["path"])
            if record is None or record.asset_id in self._index:
                continue
            add_record(self.project, record)
            self._index[record.asset_id] = record
            adopted.append(record)
        if adopted:
            self._dirty.set()
        return adopted


def _read_sidecar(root: Path, relpath: str) -> AssetRecord | None:
    image = root / PurePosixPath(relpath)
    try:
        data = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
        record = AssetRecord.from_dict(data)
        if record.path != relpath or file_sha256(image) != record.sha256:
            return None
    except (OSError, ValueError, TypeError):
        return None
    return record
