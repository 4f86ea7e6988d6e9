"""Small file-system helpers shared by every layer: atomic writes and safe joins.

Atomic means: write a temporary file in the same folder, flush and fsync it, then ``os.replace``
it over the target, so a reader sees either the old or the new file, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

import orjson

__all__ = [
    "O_NOFOLLOW",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "ensure_inside",
    "file_sha256",
    "fsync_dir",
    "is_safe_relative",
    "json_bytes",
    "mkdirs_inside",
    "open_inside",
    "safe_join",
    "unlink_inside",
]


def _create_temp(path: Path, inside: Path | None = None) -> tuple[int, str]:
    """A new ``.<name>.<random>.tmp`` beside ``path`` (parent folders made), open for writing.

    Its permissions are those of the file it will replace, or the usual ones for a new file
    (0666 less the umask); ``mkstemp``'s 0600 would make a user's ``project.json`` private
    the first time it is saved.
    """
    if inside is not None:
        mkdirs_inside(inside, path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        keep = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp_name = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp_name, flags, 0o666)
        except FileExistsError:
            continue
        if keep is not None and hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, keep)
        return fd, tmp_name
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    durable: bool = True,
    sync_folder: bool = True,
    inside: Path | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    ``durable=False`` skips the fsyncs: still never half-written, but possibly lost in a power
    cut (for caches that can be made again). ``sync_folder=False`` leaves the folder's fsync
    (which makes the rename itself durable) to the caller, who may cover several files with one
    :func:`fsync_dir`. ``inside`` (the project folder) refuses a target whose folder is, or is
    reached through, a link that leaves it (:func:`ensure_inside`); a link at ``path`` itself is
    replaced by the new file, never written through.
    """
    fd, tmp_name = _create_temp(path, inside)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if durable and sync_folder:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_writer(path: Path, *, inside: Path | None = None) -> Iterator[IO[bytes]]:
    """Stream into ``path`` atomically: a temporary file renamed over it once the block ends
    without an error (then flushed and fsynced); on an error the target is left untouched.
    ``inside`` as for :func:`atomic_write_bytes`."""
    fd, tmp_name = _create_temp(path, inside)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, inside: Path | None = None) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (``inside`` as for atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"), inside=inside)


def json_bytes(data: Any) -> bytes:
    """``data`` as indented UTF-8 JSON with a final newline: the bytes
    ``json.dumps(data, indent=2, ensure_ascii=False)`` gives, made by orjson in one buffer
    (a 2000-panel ``project.json`` in milliseconds, without a burst of small objects that
    would fragment the heap). What orjson refuses (an integer beyond 64 bits, a non-string
    key) goes through the standard library."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    except (orjson.JSONEncodeError, TypeError):
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: Path, data: Any, *, inside: Path | None = None) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    atomic_write_bytes(path, json_bytes(data), inside=inside)


def fsync_dir(folder: Path) -> None:
    """Make the renames and creations in ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_safe_relative(name: str) -> bool:
    """True when ``name`` is a relative path that stays inside the folder it is joined to.

    Refuses empty names, absolute paths (POSIX and Windows, drive letters and UNC), ``..``
    components, NUL bytes and backslash tricks.
    """
    if not name or "\x00" in name:
        return False
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        return False
    if PureWindowsPath(name).drive or name.startswith(("/", "\\")):
        return False
    parts = name.replace("\\", "/").split("/")
    return all(part not in ("..",) for part in parts)


def safe_join(root: Path, *names: str) -> Path:
    """Join server-provided ``names`` under ``root``; raise ``ValueError`` if it would escape.

    Checks the names themselves and the resolved result, so symlinks inside ``root`` that point
    outside are refused too.
    """
    for name in names:
        if name and not is_safe_relative(name):
            raise ValueError(f"unsafe path component {name!r}")
    candidate = root.joinpath(*[n for n in names if n])
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"{candidate} resolves outside {root}")
    return candidate


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks (blocking: use ``asyncio.to_thread`` in async)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ----------------------------------------------------------------------------- containment
# A project is received from others: a link planted in it (``.storycore -> ~``,
# ``storyboard -> /etc``, ``.storycore/journal.jsonl -> ~/.bashrc``) must never carry a write,
# truncate, append or delete outside it. Every write into a project goes through these checks:
# the real path (every link on the way followed) must stay inside the real project folder, and
# files opened for appending or rewriting in place are opened with O_NOFOLLOW.

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _is_within(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _first_link_out(root: Path, path: Path, real_root: str) -> tuple[Path, str] | None:
    """The first link between ``root`` and ``path`` whose target leaves ``root``."""
    try:
        relative = path.absolute().relative_to(root.absolute())
    except ValueError:
        return None
    probe = root
    for part in relative.parts:
        probe = probe / part
        if probe.is_symlink():
            target = os.path.realpath(probe)
            if not _is_within(target, real_root):
                return probe, target
    return None


_real_roots: dict[tuple[str, int, int, int], str] = {}


def _real_root(root: Path) -> str:
    """``realpath(root)``, remembered per folder identity (device, inode, change time): every
    write of a run checks against the same project, and a root replaced meanwhile (even by a
    folder that reuses the inode) has another identity."""
    try:
        info = os.stat(root)
    except OSError:
        return os.path.realpath(root)
    key = (os.path.abspath(root), info.st_dev, info.st_ino, info.st_ctime_ns)
    real = _real_roots.get(key)
    if real is None:
        if len(_real_roots) > 64:
            _real_roots.clear()
        real = _real_roots[key] = os.path.realpath(root)
    return real


def _real_path_under(root: Path, real_root: str, path: Path) -> str:
    """``realpath(path)`` for a path written under ``root``: walks only the components below
    ``root`` (one ``lstat`` each, links followed), not the whole path again."""
    try:
        parts = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).parts
    except ValueError:
        return os.path.realpath(path)
    if ".." in parts:
        return os.path.realpath(path)
    current = real_root
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *parts[index + 1 :])  # the rest does not exist yet
        except OSError:
            return os.path.realpath(path)
        current = os.path.realpath(candidate) if stat.S_ISLNK(info.st_mode) else candidate
    return current


def ensure_inside(root: Path, path: Path, *, what: str = "file") -> Path:
    """``path`` if its real path (links followed) stays inside ``root``'s real folder.

    Otherwise raise :class:`~storycore.errors.OutsideProjectError` naming the path and the link
    that leads out. ``what`` says what the path is for the message (``"journal"``,
    ``"render folder"``). The final component may be missing (about to be created).
    """
    real_root = _real_root(root)
    real = _real_path_under(root, real_root, path)
    if _is_within(real, real_root):
        return path
    from storycore.errors import OutsideProjectError

    link = _first_link_out(root, path, real_root)
    if link is not None:
        message = (
            f"the {what} would be written outside the project: {link[0]} is a link to "
            f"{link[1]}, and StoryCore never writes or deletes through a link that leaves the "
            "project"
        )
    else:
        message = f"the {what} {path} is outside the project folder {root}"
    raise OutsideProjectError(
        message,
        where=str(path),
        hint="remove the link (or replace it with a real folder or file inside the project) "
        "and run again",
    )


def mkdirs_inside(root: Path, folder: Path, *, what: str = "folder") -> Path:
    """Create ``folder`` (and its parents) after checking that it stays inside ``root``."""
    ensure_inside(root, folder, what=what)
    if folder.is_dir():
        return folder  # already there, and its real path was just checked
    folder.mkdir(parents=True, exist_ok=True)
    return ensure_inside(root, folder, what=what)  # a link created meanwhile is caught too


def open_inside(
    root: Path, path: Path, flags: int, mode: int = 0o644, *, what: str = "file"
) -> int:
    """``os.open(path, flags | O_NOFOLLOW)`` after checking its folder stays inside ``root``.

    The file itself must not be a link (``O_NOFOLLOW``; checked by hand where the platform lacks
    the flag): a lock or a journal that is a link to ``~/.bashrc`` is refused, not followed.
    """
    mkdirs_inside(root, path.parent, what=f"{what}'s folder")
    if path.is_symlink():
        ensure_inside(root, path, what=what)
        from storycore.errors import OutsideProjectError

        raise OutsideProjectError(
            f"the {what} is a link ({path} -> {os.readlink(path)}); StoryCore writes its own "
            "files only as plain files",
            where=str(path),
            hint="remove the link and run again",
        )
    try:
        return os.open(path, flags | O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            ensure_inside(root, path, what=what)
            from storycore.errors import OutsideProjectError

            raise OutsideProjectError(
                f"the {what} is a link; StoryCore writes its own files only as plain files",
                where=str(path),
                hint="remove the link and run again",
            ) from None
        raise


def unlink_inside(root: Path, path: Path, *, what: str = "file", missing_ok: bool = True) -> None:
    """Delete ``path`` (a link is removed, never its target) if its folder is inside ``root``."""
    ensure_inside(root, path.parent, what=f"{what}'s folder")
    path.unlink(missing_ok=missing_ok)
