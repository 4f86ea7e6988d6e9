"""The render journal: an append-only log that lets an interrupted render resume.

``<project>/.storycore/journal.jsonl`` holds one JSON object per line, each flushed and fsynced
before the action it announces, so after a crash, a Ctrl-C or ``kill -9`` the next run knows
every prompt that might exist on a server:

- ``submit``: written *before* ``POST /prompt``: prompt_id, shot_id, backend URL, client_id,
  workflow sha256, filename_prefix, seed;
- ``done``: the panel's image is in the project (asset_id, sha256);
- ``failed``: the prompt failed (error text); ``lost``: the server forgot it;
- ``cancelled``: we removed it from the queue or interrupted it;
- ``upload``: we uploaded an image (backend, name the server returned, sha256).

A prompt with ``submit`` and no ``done`` / ``failed`` / ``lost`` / ``cancelled`` is *open*: the
engine reconciles it through ``/history`` and ``/queue`` before submitting anything new. A torn
last line (a crash mid-write) is ignored.

The journal is opened only as a plain file of the project with one name
(:func:`storycore._statefiles.open_state_file`): a journal that is a link (to ``~/.bashrc``, whose
next login would run the appended text), a hard link or a named pipe is refused with a
:class:`~storycore.errors.ProjectError` naming it. It is read line by line, a line of more than
:data:`~storycore._statefiles.MAX_LINE` bytes skipped, so a planted file of gigabytes costs time,
not memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from storycore._statefiles import STATE_DIR, open_state_file, read_state_lines

__all__ = ["JOURNAL_PATH", "Journal", "OpenPrompt"]

JOURNAL_PATH = STATE_DIR / "journal.jsonl"
_CLOSING = {"done", "failed", "lost", "cancelled"}


@dataclass
class OpenPrompt:
    """A prompt the journal says was submitted and never closed."""

    prompt_id: str
    shot_id: str
    backend: str
    workflow_sha256: str
    record: dict[str, Any] = field(default_factory=dict)


class Journal:
    """Append-only, fsynced JSON-lines journal. Safe to use from one process at a time, from
    any thread. The file stays open between appends; :meth:`close` when done."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.path = project_root / JOURNAL_PATH
        self._lock = threading.Lock()
        self._handle: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        handle = os.fdopen(open_state_file(self.root, self.path, flags, what="journal"), "a+b")
        # A write cut short (disk full, crash) leaves a torn last line: start a new one so the
        # next event is not glued onto it.
        end = handle.seek(0, os.SEEK_END)
        if end > 0:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        return handle

    def append(self, event: str, **data: Any) -> None:
        """Write one event durably (flush + fsync) before returning."""
        record = {"event": event, "t": datetime.now(UTC).isoformat(), **data}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if self._handle is None:
                    self._handle = self._open()
                self._handle.write(line.encode("utf-8"))
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except BaseException:
                self._close()  # the next append reopens and checks for a torn line
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def events(self) -> Iterator[dict[str, Any]]:
        """Every complete event, oldest first; a torn or garbled line is skipped."""
        for raw in read_state_lines(self.root, self.path, what="journal"):
            try:
                item = json.loads(raw.decode("utf-8", errors="replace"))
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(item, dict) and isinstance(item.get("event"), str):
                yield item

    def open_prompts(self) -> list[OpenPrompt]:
        """Prompts submitted and never closed, in submission order."""
        pending: dict[str, OpenPrompt] = {}
        for item in self.events():
            prompt_id = str(item.get("prompt_id", ""))
            if not prompt_id:
                continue
            if item["event"] == "submit":
                pending[prompt_id] = OpenPrompt(
                    prompt_id=prompt_id,
                    shot_id=str(item.get("shot_id", "")),
                    backend=str(item.get("backend", "")),
                    workflow_sha256=str(item.get("workflow_sha256", "")),
                    record=item,
                )
            elif item["event"] in _CLOSING:
                pending.pop(prompt_id, None)
        return list(pending.values())

    def uploads(self) -> list[dict[str, Any]]:
        """Every upload event (for server-side cleanup)."""
        return [item for item in self.events() if item["event"] == "upload"]

    def prefixes(self) -> set[str]:
        """Every filename_prefix we submitted (for server-side cleanup)."""
        return {
            str(item["filename_prefix"])
            for item in self.events()
            if item["event"] == "submit" and item.get("filename_prefix")
        }
