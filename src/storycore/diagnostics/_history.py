"""A bounded diagnostic history: the last N diagnoses in memory and as JSON lines on disk.

Each record is one ``os.write`` of one line to a file opened with ``O_APPEND``, so concurrent
writers never interleave within a line and a crash leaves at most a missing last line. When the
file grows past ``max_bytes`` it is rewritten atomically with only the newest ``maxlen`` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from storycore._fsutil import atomic_write_text
from storycore.diagnostics._model import Diagnosis

__all__ = ["HISTORY_FILE", "DiagnosticHistory"]

HISTORY_FILE = "diagnostics.jsonl"


class DiagnosticHistory:
    """The newest ``maxlen`` diagnoses; written to ``state_dir / diagnostics.jsonl`` if given."""

    def __init__(
        self, state_dir: Path | None = None, *, maxlen: int = 200, max_bytes: int = 512 * 1024
    ) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self.path = state_dir / HISTORY_FILE if state_dir is not None else None
        self._items: deque[Diagnosis] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    @classmethod
    def for_project(cls, project_dir: Path, **kwargs: int) -> DiagnosticHistory:
        """The history kept in a project's state folder (``.storycore/diagnostics.jsonl``)."""
        return cls(project_dir / ".storycore", **kwargs)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Diagnosis]:
        return iter(list(self._items))

    def record(self, diagnosis: Diagnosis) -> None:
        """Keep ``diagnosis`` and append it to the file (blocking; see :meth:`arecord`)."""
        with self._lock:
            self._items.append(diagnosis)
            if self.path is None:
                return
            line = json.dumps(diagnosis.to_dict(), ensure_ascii=False) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > self.max_bytes:
                self._compact()

    async def arecord(self, diagnosis: Diagnosis) -> None:
        """:meth:`record` off the event loop."""
        await asyncio.to_thread(self.record, diagnosis)

    def _compact(self) -> None:
        assert self.path is not None
        lines = self.path.read_text(encoding="utf-8").splitlines()
        keep = [line for line in lines if line.strip()][-self.maxlen :]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def load(self) -> list[Diagnosis]:
        """Read the file back (newest last), skipping damaged lines; fills the memory copy."""
        if self.path is None or not self.path.is_file():
            return list(self._items)
        loaded: list[Diagnosis] = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                loaded.append(Diagnosis.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        with self._lock:
            self._items.clear()
            self._items.extend(loaded[-self.maxlen :])
        return list(self._items)
