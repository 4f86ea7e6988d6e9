"""Reading and writing a project's JSON files as received from others (I/O, no models).

A project folder comes from anywhere (a download, a mail), so reading its JSON never ends in a
traceback: bad UTF-8, a syntax error or a nesting too deep (``[[[[...`` 100000 times, which
the standard library answers with ``RecursionError``) is a :class:`ProjectError` naming the file
and, where there is one, the JSON path. Writing always succeeds for whatever was read: a lone
surrogate (``"\\ud800"``, valid JSON that neither orjson nor UTF-8 can write as it is) is
written back as the same ``\\ud800`` escape, so the file loads again to the same text.

A :class:`DiskState` is what ``project.json`` held when StoryCore last read or wrote it (its
inode, size and modification time, and its bytes): a save compares the file with it first, so
an edit a person made meanwhile is seen (and merged, :mod:`storycore._project_merge`) instead of
overwritten.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storycore._fsutil import atomic_writer, json_bytes
from storycore.errors import ProjectError

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "DiskState",
    "decode_json",
    "encode_json",
    "read_json_file",
    "write_if_unchanged",
]

# Far deeper than any project (about six levels), and shallow enough that every file that loads
# can be written back: the standard library's encoder and the merge recurse once per level.
MAX_DEPTH = 200
# A 2000-panel project.json is about 2 MB.
MAX_FILE_BYTES = 64 * 2**20
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

Stamp = tuple[int, int, int]  # st_ino, st_size, st_mtime_ns


@dataclass(frozen=True)
class DiskState:
    """``project.json`` as StoryCore last read or wrote it."""

    stamp: Stamp | None
    content: bytes


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _deepest(value: Any, limit: int) -> tuple[str | int, ...] | None:
    """The path of the first container nested ``limit`` levels deep in ``value`` (no recursion:
    the walk itself must survive what it is looking for)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) >= limit:
            return path
        pairs = item.items() if type(item) is dict else enumerate(item)
        for key, child in pairs:
            if type(child) is dict or type(child) is list:
                stack.append((child, (*path, key)))
    return None


def _path_text(parts: tuple[str | int, ...]) -> str:
    from storycore._storyboard_check import json_path

    text = json_path(parts)
    return text if len(text) <= 80 else text[:60] + "..." + text[-17:]


def decode_json(content: bytes, path: Path) -> Any:
    """The JSON value in ``content`` (the bytes of ``path``), or a :class:`ProjectError`."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(
            f"is not UTF-8 text (byte {exc.start})", where=str(path), hint="Save it as UTF-8"
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(
            f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            where=str(path),
            hint="Fix the syntax at that position",
        ) from None
    except RecursionError:
        value = None  # reported below, outside the except block's deep traceback
    else:
        deepest = _deepest(value, MAX_DEPTH) if type(value) in (dict, list) else None
        if deepest is None:
            return value
        raise ProjectError(
            f"nests values more than {MAX_DEPTH} levels deep (at {_path_text(deepest)}); "
            "StoryCore reads files nested at most that deep",
            where=str(path),
            hint="Flatten that value (a project file needs about six levels)",
        )
    raise ProjectError(
        f"nests values far more than {MAX_DEPTH} levels deep (too deep to read at all); "
        "StoryCore reads files nested at most that deep",
        where=str(path),
        hint="Flatten the nested value, or restore the file from a copy",
    )


def _read_file(path: Path) -> DiskState:
    """The bytes and stamp of ``path`` (one open: the stamp is the stamp of these very bytes).

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read: a FIFO planted as
    ``project.json`` would block the read forever, ``/dev/zero`` would fill the memory."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ProjectError(f"cannot be read ({exc.strerror or exc})", where=str(path)) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProjectError(
                "is not a regular file (a device, a pipe or a folder); StoryCore reads its "
                "project files only as plain files",
                where=str(path),
                hint="Replace it with the real file",
            )
        if st.st_size > MAX_FILE_BYTES:
            raise ProjectError(
                f"is {st.st_size / 2**20:.0f} MiB; StoryCore reads project files of at most "
                f"{MAX_FILE_BYTES // 2**20} MiB",
                where=str(path),
                hint="Check that this is the project's own file",
            )
        try:
            content = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ProjectError(f"cannot be read ({exc.strerror or exc})", where=str(path)) from None
    if len(content) > MAX_FILE_BYTES:
        raise ProjectError(
            f"grew past {MAX_FILE_BYTES // 2**20} MiB while being read", where=str(path)
        )
    return DiskState(_stamp(st), content)


def read_json_file(path: Path) -> tuple[Any, DiskState]:
    """The JSON value in ``path`` and the file's state when read."""
    try:
        state = _read_file(path)
    except FileNotFoundError:
        raise ProjectError(
            "does not exist",
            where=str(path),
            hint="Point --project at a StoryCore project folder, or create one with "
            "`storycore init NAME`",
        ) from None
    return decode_json(state.content, path), state


def encode_json(data: Any) -> bytes:
    """``data`` as indented UTF-8 JSON (:func:`storycore._fsutil.json_bytes`), always: a lone
    surrogate in a string is written as its ``\\uXXXX`` escape, which loads back the same."""
    try:
        return json_bytes(data)
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2, ensure_ascii=False)
        escaped = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return (escaped + "\n").encode("utf-8")


def _current(path: Path, known: DiskState) -> DiskState:
    """``path``'s state now: ``known`` itself while the stamp is unchanged (no read)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ProjectError(f"cannot be read ({exc.strerror or exc})", where=str(path)) from None
    if stat.S_ISREG(st.st_mode) and _stamp(st) == known.stamp:
        return known
    return _read_file(path)


def write_if_unchanged(
    path: Path, payload: bytes, known: DiskState | None, *, inside: Path
) -> tuple[DiskState, bool]:
    """Write ``payload`` to ``path`` atomically unless the file changed since ``known``.

    Returns ``(state, written)``: the new file's state and True, or, when someone else changed
    the file meanwhile, its current state (bytes included) and False, nothing written. A missing
    file, or one whose bytes are still ``known``'s, is written. The file is replaced, never
    written through (a link planted as ``project.json`` is replaced by the file); ``inside``
    (the project folder) refuses a folder on the way that leads out of it.
    """
    if known is not None:
        try:
            current = _current(path, known)
        except FileNotFoundError:
            current = None
        if current is not None and current.content != known.content:
            return current, False
    with atomic_writer(path, inside=inside) as handle:
        handle.write(payload)
        handle.flush()
        # The stamp of the file as it will be after the rename (which keeps inode and mtime).
        written = _stamp(os.fstat(handle.fileno()))
    return DiskState(written, payload), True
