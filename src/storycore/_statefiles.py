"""StoryCore's own files in a project (lock, journal, diagnostics, metrics): plain files only.

A project is received from others, so what sits at ``.storycore/journal.jsonl`` may be a
symbolic link to ``~/.bashrc``, a hard link to it (no link to see, the same file under a second
name), a named pipe (which blocks whoever opens it) or a file of gigabytes. StoryCore writes and
reads its own files only when each is a plain file with one name, reached without a link that
leaves the project (:func:`storycore._fsutil.open_inside`: ``O_NOFOLLOW``, so a link is refused
even when it points inside), and reads them line by line with a bound on a line's length.

Folders may be links that stay inside the project (``.storycore -> state``, a shot folder kept
elsewhere in the project); a folder link that leaves it is refused (``ensure_inside``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storycore._fsutil import O_NOFOLLOW, ensure_inside, open_inside
from storycore.errors import OutsideProjectError, ProjectError

__all__ = [
    "MAX_LINE",
    "STATE_DIR",
    "check_state_file",
    "iter_lines",
    "open_plain_for_reading",
    "open_state_file",
    "read_state_lines",
]

#: The project's state folder, relative to the project root.
STATE_DIR = Path(".storycore")
#: The longest line a reader takes (a journal's ``done`` line is a few KB); longer ones are skipped.
MAX_LINE = 1 << 20

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a named pipe then fails or opens at once, never waits
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_WRITING = os.O_WRONLY | os.O_RDWR
# open() of something that is not a plain file: a pipe with no reader, a socket, a folder...
_NOT_A_FILE = {errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP}


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_plain(path: Path, what: str, mode: int) -> ProjectError:
    return ProjectError(
        f"the {what} is not a plain file ({_kind(mode)}); StoryCore keeps its own files only "
        "as plain files",
        where=str(path),
        hint="remove it (StoryCore makes a new one) and run again",
    )


def _hard_link(path: Path, what: str, names: int) -> OutsideProjectError:
    return OutsideProjectError(
        f"the {what} is a hard link (the same file has {names} names, and another may be "
        "outside the project); StoryCore writes its own files only when they have one name",
        where=str(path),
        hint=f"make it a file of its own (cp -p {path} {path}.copy && mv {path}.copy {path}) "
        "or remove it, and run again",
    )


def _check_opened(fd: int, path: Path, what: str, writing: bool) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _not_plain(path, what, info.st_mode)
    if writing and info.st_nlink > 1:
        raise _hard_link(path, what, info.st_nlink)


def open_state_file(root: Path, path: Path, flags: int, *, what: str, mode: int = 0o644) -> int:
    """``os.open`` a StoryCore file inside ``root``: its folder created and checked, the file
    itself never a link (``O_NOFOLLOW``), a plain file, and (when opened for writing) with one
    name. A named pipe never blocks the open. Raises :class:`OutsideProjectError` or
    :class:`ProjectError` naming the path; the caller closes the descriptor."""
    try:
        fd = open_inside(root, path, flags | _O_NONBLOCK | _O_CLOEXEC, mode, what=what)
    except OSError as exc:
        if exc.errno in _NOT_A_FILE:
            try:
                found = os.lstat(path).st_mode
            except OSError:
                raise exc from None
            raise _not_plain(path, what, found) from None
        raise
    try:
        _check_opened(fd, path, what, bool(flags & _WRITING))
        if _O_NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_state_file(root: Path, path: Path, *, what: str) -> None:
    """Raise as :func:`open_state_file` would if ``path`` (when it exists) is a link, not a
    plain file, a hard link, or in a folder that leaves ``root``; opens and writes nothing."""
    ensure_inside(root, path.parent, what=f"{what}'s folder")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        ensure_inside(root, path, what=what)  # a link out is named with its target
        raise OutsideProjectError(
            f"the {what} is a link ({path} -> {os.readlink(path)}); StoryCore writes its own "
            "files only as plain files",
            where=str(path),
            hint="remove the link and run again",
        )
    if not stat.S_ISREG(info.st_mode):
        raise _not_plain(path, what, info.st_mode)
    if info.st_nlink > 1:
        raise _hard_link(path, what, info.st_nlink)


def iter_lines(handle: BinaryIO, max_line: int = MAX_LINE) -> Iterator[bytes]:
    """The lines of ``handle`` (each with its newline, the last maybe without), read a bounded
    piece at a time; a line longer than ``max_line`` bytes is skipped whole."""
    while True:
        line = handle.readline(max_line + 1)
        if not line:
            return
        if len(line) > max_line:
            while not line.endswith(b"\n"):  # the rest of the overlong line, piece by piece
                line = handle.readline(max_line)
                if not line:
                    return
            continue
        yield line


def read_state_lines(
    root: Path, path: Path, *, what: str, max_line: int = MAX_LINE
) -> Iterator[bytes]:
    """The lines of a StoryCore file (nothing when it is missing), opened as
    :func:`open_state_file` opens it for reading; the file is closed when the loop ends."""
    if not os.path.lexists(path):
        return
    try:
        fd = open_state_file(root, path, os.O_RDONLY | getattr(os, "O_BINARY", 0), what=what)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb") as handle:
        yield from iter_lines(handle, max_line)


def open_plain_for_reading(path: Path, *, follow_link: bool = False) -> BinaryIO | None:
    """``path`` opened for reading when it is a plain file reached without following a link at
    its end (a named pipe never blocks); None otherwise. For best-effort readers (summaries,
    the board's renders). ``follow_link=True`` accepts a link at the end (the caller checks
    where it leads)."""
    nofollow = 0 if follow_link else O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | _O_NONBLOCK | _O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        if _O_NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        return None
    return os.fdopen(fd, "rb")
