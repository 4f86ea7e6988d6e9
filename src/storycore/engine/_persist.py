"""Everything a render writes into the project, in an order that survives any crash.

For each finished panel, in one worker-thread step (:meth:`ProjectWriter.land`):

1. the next render number of the shot is taken, the image gets its provenance, and the image
   and its sidecar are written atomically (``_outputs.finish_render``);
2. the journal gets ``done`` with the record's path (fsynced): the panel is now durable;
3. the storyboard sheet's thumbnail is made from the image file (best effort);

then, on the event loop (:meth:`ProjectWriter.add`), the record joins the in-memory manifest,
and ``project.json`` is saved atomically by a background saver at most once per
``save_interval`` (and always at the end of the run).

A person may edit ``project.json`` while the run goes on. Each save first compares the file
with what the run last read or wrote; when it changed, the edit is read back and merged
(:mod:`storycore._project_merge`: the run's records and statuses join the person's file, the
person's value wins where both changed, with a warning), never overwritten. A file that cannot
be read at that moment (half-typed JSON) is left alone, with a warning, until a later save
finds it readable; the finished panels are in the journal meanwhile.

Rewriting a 2000-panel ``project.json`` after every panel would cost more than rendering on a
fast server, so saves are coalesced; a crash between 2 and 3 loses nothing, because the next run
adopts every ``done`` record that the manifest lacks from the journal (:meth:`adopt_unrecorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from storycore._fsutil import file_sha256, is_safe_relative
from storycore._project_io import decode_json, encode_json, write_if_unchanged
from storycore.engine._outputs import finish_render
from storycore.errors import ProjectError, StoryCoreError
from storycore.journal import Journal
from storycore.manifest import (
    GENERATED_DIR,
    MANIFEST_KEY,
    AssetRecord,
    add_record,
    highest_render_on_disk,
    records_by_key,
    set_shot_status,
)
from storycore.project import (
    PROJECT_FILE,
    Project,
    apply_disk_edit,
    now_iso,
    read_disk_edit,
    validate_project_data,
)
from storycore.review import cache_thumbnail, thumb_cache

__all__ = ["ProjectWriter"]

_log = logging.getLogger(__name__)


class ProjectWriter:
    """Serialises the engine's writes to one project (one writer per run)."""

    def __init__(
        self,
        project: Project,
        journal: Journal,
        save_interval: float = 1.0,
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.project = project
        self.journal = journal
        self.save_interval = save_interval
        self.notify = notify  # warnings for people (a person's edit kept...); else logged
        self._last_problem: str | None = None
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._renders: dict[tuple[str, int], int] = {}  # last number taken in this run
        self._numbers = threading.Lock()  # _renders and _highest: used by worker threads
        self._saver: asyncio.Task[None] | None = None
        # asset_id -> the manifest entry (the dict in project.data: no second copy per record)
        self._index: dict[str, dict[str, Any]] = {}
        self._thumbs = thumb_cache(project.root)
        self._highest: dict[tuple[str, int], int] = {}  # highest render number in the manifest
        self._reindex()

    def _reindex(self) -> None:
        self._index.clear()
        manifest = self.project.data.get("asset_manifest")
        items = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("asset_id"), str):
                self._remember(item)

    def _warn(self, text: str) -> None:
        if self.notify is not None:
            self.notify(text)
        else:
            _log.warning("%s", text)

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
        A file someone edited meanwhile is merged, then written (at most three rounds while
        it keeps changing; then a later save tries again).
        """
        async with self._lock:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            root = self.project.root
            for _attempt in range(3):
                self.project.data["updated_at"] = now_iso()
                if final:
                    validate_project_data(root, self.project.data)
                payload = encode_json(self.project.data)
                known = self.project.on_disk
                try:
                    state, written = await asyncio.to_thread(
                        write_if_unchanged, root / PROJECT_FILE, payload, known, inside=root
                    )
                    if written:
                        self.project.on_disk = state
                        self._last_problem = None
                        return
                    edit = await asyncio.to_thread(read_disk_edit, self.project, state)
                except ProjectError as err:
                    self._unreadable(err)
                    return
                for text in apply_disk_edit(self.project, edit):
                    self._warn(text)
                self._reindex()
            self._dirty.set()

    def _unreadable(self, err: ProjectError) -> None:
        """The file someone changed cannot be merged now: leave it, say so once, retry later."""
        self._dirty.set()
        text = (
            f"{err.where}: {err.message.rstrip('.')}. StoryCore left it as it is and saves the "
            "run's records into it once it can read it again; the finished panels are safe in "
            "the journal meanwhile (the next run records them)"
        )
        if text != self._last_problem:
            self._last_problem = text
            self._warn(text)

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
        download: Path,
    ) -> AssetRecord:
        """Steps 1-3 of a finished panel (run it in a worker thread). ``draft(number)`` makes
        the record and the provenance for the render number taken here; ``download`` (the
        server's image, downloaded into the shot's folder) is consumed."""
        record, provenance = draft(self.take_render_number(shot_id, version))
        record = finish_render(self.project.root, record, download, provenance)
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
            cache_thumbnail(self._thumbs, self.project.root, record)
        return record

    async def add(
        self,
        record: AssetRecord,
        activate: Callable[[AssetRecord | None, AssetRecord], bool] | None = None,
    ) -> None:
        """Add a landed (journaled) record to the manifest; ``project.json`` is saved soon.
        ``activate(active, record)`` says whether it becomes the shot's active asset (default:
        it does)."""
        async with self._lock:
            yes = activate(self.active(record.shot_id), record) if activate else True
            self._remember(add_record(self.project, record, activate=yes))
        self.mark_dirty()

    def records_by_key(self) -> dict[tuple[str, str], list[AssetRecord]]:
        """Every readable record by (shot id, cache key), newest first
        (:func:`storycore.manifest.records_by_key`)."""
        readable: list[AssetRecord] = []
        for item in self._index.values():
            try:
                readable.append(AssetRecord.from_dict(item))
            except (TypeError, ValueError):
                continue
        return records_by_key(readable)

    def activate(self, record: AssetRecord) -> None:
        """Make an existing record its shot's active asset (a kept take of this run, when the
        shot showed one of an older storyboard or another profile)."""
        set_shot_status(
            self.project,
            record.shot_id,
            "placeholder" if record.placeholder else "rendered",
            active_asset=record.asset_id,
            version=record.version,
        )
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
    """The record of a journaled ``done`` event when its image is still the recorded one.

    The journal and the sidecars are files in the project, planted ones too: a path that is
    not a plain file under the generated-images folder (``/dev/zero``, a FIFO, ``../..``) is
    never opened."""
    if not _our_image_path(root, relpath):
        return None
    image = root / PurePosixPath(relpath)
    try:
        if isinstance(journaled, dict):
            data = journaled
        else:
            sidecar = image.with_suffix(".json")
            if not _plain_file(sidecar) or os.stat(sidecar).st_size > 1 << 20:
                return None
            data = decode_json(sidecar.read_bytes(), sidecar)
            if not isinstance(data, dict):
                return None
        record = AssetRecord.from_dict(data)
        if record.path != relpath or file_sha256(image) != record.sha256:
            return None
    except (OSError, ValueError, TypeError, ProjectError):
        return None
    return record


def _our_image_path(root: Path, relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    if not is_safe_relative(relpath) or "\\" in relpath or parts[:3] != GENERATED_DIR.parts:
        return False
    image = root / PurePosixPath(relpath)
    real_root = os.path.realpath(root)
    inside = os.path.realpath(image).startswith(real_root.rstrip(os.sep) + os.sep)
    return inside and _plain_file(image)


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
