"""The storyboard's thumbnail cache: JPEG thumbnails keyed by image content, in one SQLite file.

One database instead of one file per thumbnail: on the file systems we measured, creating a file
costs more CPU than decoding and shrinking a small render, and a 2000-panel board would leave
2000 files behind. SQLite gives atomic inserts, safe concurrent readers and writers (threads and
processes) and survives a crash mid-write; the cache skips fsyncs (``synchronous=OFF``): a
thumbnail lost in a power cut is made again.

It is an optimisation only: every error (a locked, damaged or unwritable database) reads as a
miss, and a damaged file is replaced. ``storycore assets clean`` may delete it at any time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

__all__ = ["ThumbCache"]

_FILE = "thumbs.sqlite"


class ThumbCache:
    """``get``/``put`` JPEG bytes by key; thread-safe; lazily opened; ``close`` when done."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / _FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        for attempt in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=5.0, check_same_thread=False, isolation_level=None
                )
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=OFF")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS thumbs (key TEXT PRIMARY KEY, jpeg BLOB)"
                    )
                except sqlite3.Error:
                    conn.close()
                    raise
            except sqlite3.DatabaseError:
                if attempt == 0:  # not a database (damaged): start a new cache
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(OSError):
                            Path(f"{self.path}{suffix}").unlink()
                    continue
                self._broken = True
                return None
            except (sqlite3.Error, OSError):
                self._broken = True
                return None
            self._conn = conn
            return conn
        return None  # pragma: no cover - the loop always returns

    def get(self, key: str) -> bytes | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT jpeg FROM thumbs WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def put(self, key: str, jpeg: bytes) -> None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                conn.execute("INSERT OR REPLACE INTO thumbs (key, jpeg) VALUES (?, ?)", (key, jpeg))

    def __len__(self) -> int:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            try:
                return int(conn.execute("SELECT COUNT(*) FROM thumbs").fetchone()[0])
            except sqlite3.Error:
                return 0

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def __enter__(self) -> ThumbCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
