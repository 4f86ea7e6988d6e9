"""The server's log file: rotation before a start, the last lines, following new lines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

__all__ = ["follow_lines", "rotate_log", "tail_lines"]


def rotate_log(path: Path, max_bytes: int, backups: int) -> None:
    """Shift ``log`` -> ``log.1`` -> ... -> ``log.N`` when ``log`` is larger than ``max_bytes``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= max_bytes:
        return
    if backups <= 0:
        path.unlink()
        return
    for index in range(backups - 1, 0, -1):
        src = path.with_name(f"{path.name}.{index}")
        if src.exists():
            os.replace(src, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def tail_lines(path: Path, count: int, *, start_offset: int = 0, chunk: int = 8192) -> list[str]:
    """The last ``count`` lines of ``path`` from ``start_offset`` on (reads from the end)."""
    if count <= 0:
        return []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        end = handle.seek(0, os.SEEK_END)
        start = min(max(0, start_offset), end)
        data = b""
        pos = end
        while pos > start and data.count(b"\n") <= count:
            step = min(chunk, pos - start)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


async def follow_lines(
    path: Path,
    *,
    poll: float = 0.25,
    max_seconds: float | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> AsyncIterator[str]:
    """Yield the lines appended to ``path`` from now on.

    Ends after ``max_seconds``, or once ``keep_going()`` says False (after yielding what is
    left). A rotated or truncated file is followed from its new start.
    """
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    first = _stat(path)
    position, inode = (first.st_size, first.st_ino) if first is not None else (0, None)
    pending = b""
    while True:
        stat = _stat(path)  # one stat call: cheap enough to stay on the loop
        if stat is not None and (stat.st_ino != inode or stat.st_size < position):
            inode, position, pending = stat.st_ino, 0, b""  # rotated or truncated
        if stat is not None and stat.st_size > position:
            chunk = await asyncio.to_thread(_read_from, path, position)
            position += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", errors="replace").rstrip("\r")
        if deadline is not None and time.monotonic() >= deadline:
            return
        if keep_going is not None and not keep_going():
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        await asyncio.sleep(poll)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _read_from(path: Path, position: int, limit: int = 1 << 20) -> bytes:
    with path.open("rb") as handle:
        handle.seek(position)
        return handle.read(limit)
