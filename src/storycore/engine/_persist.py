"""Everything a render writes into the project, in an order that survives any crash.

For each finished panel, in one worker-thread step (:meth:`ProjectWriter.land`):

1. the next render number of the shot is taken, the image gets its provenance, and the image
   and its sidecar are written atomically (``_outputs.finish_render``);
2. the journal gets ``done`` with the record's path (fsynced): the panel is now durable;
3. the storyboard sheet's thumbnail is made from the bytes in memory (best effort);

then, on the event loop (:meth:`ProjectWriter.add`), the record joins the in-memory manifest,
and ``project.json`` is saved atomically by a background saver at most once per
``save_interval`` (and always at the end of the run).

Rewriting a 2000-panel ``project.json`` after every panel would cost more than rendering on a
fast server, so saves are coalesced; a crash between 2 and 3 loses nothing, because the next run
adopts every ``done`` record that the manifest lacks from the journal (:meth:`adopt_unrecorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from storycore._fsutil import atomic_write_bytes, file_sha256, json_bytes
from storycore.board import cache_thumbnail, thumb_cache
from storycore.engine._outputs import finish_render
from storycore.errors import StoryCoreError
from storycore.journal import Journal
from storycore.manifest import (
    MANIFEST_KEY,
    AssetRecord,
    add_record,
    highest_render_on_disk,
    set_shot_status,
)
from storycore.project import PROJECT_FILE, Project, now_iso, validate_project_data

__all__ = ["ProjectWriter"]


class ProjectWriter:
    """Serialises the engine's writes to one project (one writer per run)."""

    def __init__(self, project: Project, journal: Journal, save_interval: float = 1.0) -> None:
        self.project = project
        self.journal = journal
        self.save_interval = save_interval
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._renders: dict[tuple[str, int], int] = {}  # last number taken in this run
        self._numbers = threading.Lock()  # _renders and _highest: used by worker threads
        self._saver: asyncio.Task[None] | None = None
        # asset_id -> the manifest entry (the dict in project.data: no second copy per record)
        self._index: dict[str, dict[str, Any]] = {}
        self._thumbs = thumb_cache(project.root)
        self._highest: dict[tuple[str, int], int] = {}  # highest render number in the manifest
        manifest = project.data.get("asset_manifest")
        items = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("asset_id"), str):
                self._remember(item)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> ProjectWriter:
        self._saver = asyncio.create_task(self._save_loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        try:
            await self.flush(final=True)
        finally:
            self._thumbs.close()

    async def _save_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.save_interval)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Save ``project.json`` now if anything changed.

        The JSON is encoded here, on the event loop, so the worker thread writes a consistent
        copy while the loop goes on editing. Periodic saves skip the data-contract check (the
        engine only adds records and statuses it made itself); the ``final`` save runs it.
        """
        async with self._lock:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            self.project.data["updated_at"] = now_iso()
            if final:
                validate_project_data(self.project.root, self.project.data)
            payload = json_bytes(self.project.data)
            await asyncio.to_thread(atomic_write_bytes, self.project.root / PROJECT_FILE, payload)

    def mark_dirty(self) -> None:
        self._dirty.set()

    # ------------------------------------------------------------------ records
    def active(self, shot_id: str) -> AssetRecord | None:
        """The shot's active record (an index, not a scan of the manifest)."""
        entry = self.project.data.get("shots_index", {}).get(shot_id)
        if not isinstance(entry, dict):
            return None
        item = self._index.get(str(entry.get("active_asset", "")))
        try:
            return AssetRecord.from_dict(item) if item is not None else None
        except (TypeError, ValueError):  # a hand-edited entry we cannot read: render again
            return None

    def take_render_number(self, shot_id: str, version: int) -> int:
        """The next free render number of a shot/version, reserved for the caller (thread-safe;
        the first call for a shot also looks at the files on disk)."""
        key = (shot_id, version)
        with self._numbers:
            if key not in self._renders:
                on_disk = highest_render_on_disk(self.project.root, shot_id, version)
                self._renders[key] = max(self._highest.get(key, 0), on_disk) + 1
            else:
                self._renders[key] += 1
            return self._renders[key]

    def land(
        self,
        shot_id: str,
        version: int,
        draft: Callable[[int], tuple[AssetRecord, dict[str, Any]]],
        data: bytes,
    ) -> AssetRecord:
        """Steps 1-3 of a finished panel (run it in a worker thread). ``draft(number)`` makes
        the record and the provenance for the render number taken here."""
        record, provenance = draft(self.take_render_number(shot_id, version))
        record, png = finish_render(self.project.root, record, data, provenance)
        self.journal.append(
            "done",
            prompt_id=record.prompt_id,
            asset_id=record.asset_id,
            shot_id=record.shot_id,
            path=record.path,
            sha256=record.sha256,
            record=record.to_dict(),
        )
        with contextlib.suppress(OSError, StoryCoreError, ValueError):
            cache_thumbnail(self._thumbs, self.project.root, record, png)
        return record

    async def add(self, record: AssetRecord) -> None:
        """Add a landed (journaled) record to the manifest; ``project.json`` is saved soon."""
        async with self._lock:
            self._remember(add_record(self.project, record))
        self.mark_dirty()

    def _remember(self, item: dict[str, Any]) -> None:
        self._index[str(item["asset_id"])] = item
        render = item.get("render")
        if isinstance(render, int) and isinstance(item.get("version"), int):
            key = (str(item.get("shot_id")), int(item["version"]))
            with self._numbers:
                self._highest[key] = max(self._highest.get(key, 0), render)

    def set_status(self, shot_id: str, status: str, *, error: str | None = None) -> None:
        set_shot_status(self.project, shot_id, status, error=error)
        self.mark_dirty()

    def adopt_unrecorded(self) -> list[AssetRecord]:
        """Records the journal says are done but the manifest lacks (a crash before the save),
        read back from the journal (or, for older journals, the sidecars) when the image still
        has the recorded sha256."""
        adopted: list[AssetRecord] = []
        for event in self.journal.events():
            if event["event"] != "done" or not isinstance(event.get("path"), str):
                continue
            if event.get("asset_id") in self._index:
                continue
            record = _recorded(self.project.root, event["path"], event.get("record"))
            if record is None or record.asset_id in self._index:
                continue
            self._remember(add_record(self.project, record))
            adopted.append(record)
        if adopted:
            self._dirty.set()
        return adopted


def _recorded(root: Path, relpath: str, journaled: object) -> AssetRecord | None:
    image = root / PurePosixPath(relpath)
    try:
        if isinstance(journaled, dict):
            data = journaled
        else:
            data = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
        record = AssetRecord.from_dict(data)
        if record.path != relpath or file_sha256(image) != record.sha256:
            return None
    except (OSError, ValueError, TypeError):
        return None
    return record
