"""A bounded diagnostic history: the last N diagnoses in memory and as JSON lines on disk.

Each record is one ``os.write`` of one line to a file opened with ``O_APPEND``, so concurrent
writers never interleave within a line and a crash leaves at most a missing last line. When the
file grows past ``max_bytes`` it is rewritten atomically with only the newest ``maxlen`` lines.

The file is StoryCore's own: opened only as a plain file with one name, never through a link
(:func:`storycore._statefiles.open_state_file`), inside the project for a project's history
(``inside``), inside the state folder itself otherwise. A planted link to ``~/.bashrc`` would
otherwise get every diagnosis appended to it. Reading takes the last ``2 * max_bytes`` only, so
a planted file of gigabytes costs no memory.
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
from storycore._statefiles import STATE_DIR, iter_lines, open_state_file
from storycore.diagnostics._model import Diagnosis

__all__ = ["HISTORY_FILE", "DiagnosticHistory"]

HISTORY_FILE = "diagnostics.jsonl"


class DiagnosticHistory:
    """The newest ``maxlen`` diagnoses; written to ``state_dir / diagnostics.jsonl`` if given.

    ``inside`` is the folder the file must stay in (the project, for a project's history);
    by default ``state_dir`` itself, a folder the user chose.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        maxlen: int = 200,
        max_bytes: int = 512 * 1024,
        inside: Path | None = None,
    ) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self.path = state_dir / HISTORY_FILE if state_dir is not None else None
        self.root = inside if inside is not None else state_dir
        self._items: deque[Diagnosis] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    @classmethod
    def for_project(cls, project_dir: Path, **kwargs: int) -> DiagnosticHistory:
        """The history kept in a project's state folder (``.storycore/diagnostics.jsonl``)."""
        return cls(project_dir / STATE_DIR, inside=project_dir, **kwargs)

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
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            fd = open_state_file(self._root(), self.path, flags, what="diagnostics file")
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

    def _root(self) -> Path:
        assert self.root is not None and self.path is not None
        return self.root

    def _tail(self) -> list[str]:
        """The file's last lines: at most the last ``2 * max_bytes`` of it, whole lines only."""
        assert self.path is not None
        fd = open_state_file(self._root(), self.path, os.O_RDONLY, what="diagnostics file")
        with os.fdopen(fd, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - 2 * self.max_bytes)
            handle.seek(start)
            lines = iter_lines(handle)
            if start > 0:
                next(lines, None)  # the first line read is cut
            return [
                text
                for text in (raw.decode("utf-8", errors="replace").strip() for raw in lines)
                if text
            ]

    def _compact(self) -> None:
        assert self.path is not None
        keep = self._tail()[-self.maxlen :]
        text = "".join(line + "\n" for line in keep)
        atomic_write_text(self.path, text, inside=self._root())

    def load(self) -> list[Diagnosis]:
        """Read the file back (newest last), skipping damaged lines; fills the memory copy."""
        if self.path is None or not os.path.lexists(self.path):
            return list(self._items)
        loaded: list[Diagnosis] = []
        for line in self._tail():
            try:
                loaded.append(Diagnosis.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
        with self._lock:
            self._items.clear()
            self._items.extend(loaded[-self.maxlen :])
        return list(self._items)
