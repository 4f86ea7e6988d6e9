"""One StoryCore process at a time per project: an advisory lock on ``.storycore/lock``.

The OS releases the lock when the holder dies (even with ``kill -9``), so a crash never leaves a
project locked. The file holds the holder's pid and start time, for the error message.

The lock is the first thing a command writes into a project, so it is also the first guard: a
``.storycore`` that is a link leaving the project, or a lock file that is a link, a hard link or
not a plain file, is refused (:func:`storycore._statefiles.open_state_file`) before the file is
truncated; such a lock would otherwise truncate the file it leads to.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from storycore._statefiles import STATE_DIR, open_state_file
from storycore.errors import ProjectError

__all__ = ["ProjectLock"]


class ProjectLock:
    """``with ProjectLock(root, "generate-images"):`` raises ProjectError if another holds it."""

    def __init__(self, root: Path, purpose: str) -> None:
        self.root = root
        self.path = root / STATE_DIR / "lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = open_state_file(self.root, self.path, os.O_RDWR | os.O_CREAT, what="lock")
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            who = (
                f"pid {holder.get('pid')} ({holder.get('purpose', 'storycore')}, "
                f"since {holder.get('since', '?')})"
                if holder
                else "another process"
            )
            raise ProjectError(
                f"is in use by another StoryCore process: {who}",
                where=str(self.path.parent.parent),
                hint="wait for it to finish, or stop it (Ctrl-C) and run again",
            )
        from storycore.project import now_iso

        info = json.dumps({"pid": os.getpid(), "purpose": self.purpose, "since": now_iso()})
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, info.encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        holder = json.loads(data.decode() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
