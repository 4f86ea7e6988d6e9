"""The review feed's view of the disk: which project files changed, the board as loaded from
them, and the live status of a render (I/O; :mod:`._feed` decides what to send).

Changes come from the OS (``watchfiles``: inotify, FSEvents, ReadDirectoryChangesW), never from
polling in a loop: the project folder is watched without its subfolders (``project.json``,
``storyboard.json``), and ``.storycore`` beside it (``live.json``, ``journal.jsonl``). Whether a
project file really changed is decided by its stamp (inode, size, modification time), so a
burst of events costs three ``stat`` calls, and a reload happens once per change.

Everything read here is untrusted: ``live.json`` is read only as a plain file of the project
(never through a link, never a named pipe, at most :data:`MAX_LIVE_BYTES`), and what it says
is checked field by field before the page sees it (a preview must be a file name under
``.storycore/previews/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycore._fsutil import is_safe_relative, mkdirs_inside
from storycore._project_io import MAX_FILE_BYTES
from storycore._statefiles import STATE_DIR, open_plain_for_reading, open_state_file
from storycore.errors import ProjectError, StoryCoreError
from storycore.review._cards import Card, board_cards, card_digest

__all__ = [
    "LIVE_NAME",
    "MAX_LIVE_BYTES",
    "BoardSnapshot",
    "ProjectWatch",
    "Stamp",
    "file_stamp",
    "live_stamp",
    "load_board",
    "read_live",
    "stamps",
]

_log = logging.getLogger("storycore.review")

LIVE_NAME = "live.json"
#: live.json lists at most 1000 running panels, some 300 bytes each.
MAX_LIVE_BYTES = 4 << 20
MAX_LIVE_PANELS = 1000
_PREVIEWS = ".storycore/previews/"
_ROOT_NAMES = frozenset({"project.json", "storyboard.json", STATE_DIR.name})
_STATE_NAMES = frozenset({LIVE_NAME, "journal.jsonl", "previews"})

Stamp = tuple[int, int, int] | None  # st_ino, st_size, st_mtime_ns; None: missing


def file_stamp(path: Path) -> Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def stamps(root: Path) -> tuple[Stamp, Stamp]:
    """The stamps of ``project.json`` and ``storyboard.json`` now."""
    return file_stamp(root / "project.json"), file_stamp(root / "storyboard.json")


def live_stamp(root: Path) -> Stamp:
    path = root / STATE_DIR / LIVE_NAME
    try:
        info = os.lstat(path)  # a link is not followed (and not read: see read_live)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


# ----------------------------------------------------------------------------- the board
@dataclass(frozen=True)
class BoardSnapshot:
    """The board as loaded once: its cards in order, each card's digest, the storyboard's
    token (sha256 of the bytes the board was read from, or older: never newer), and the stamps
    of the two files taken before they were read."""

    cards: tuple[Card, ...]
    digests: dict[str, str]
    order: tuple[str, ...]
    token: str
    title: str
    project_id: str
    stamps: tuple[Stamp, Stamp]
    by_id: dict[str, Card] = field(default_factory=dict)


def _storyboard_digest(root: Path) -> str:
    path = root / "storyboard.json"
    handle = open_plain_for_reading(path, follow_link=True)  # load_project follows it too
    if handle is None:
        raise ProjectError("cannot be read as a plain file", where=str(path))
    with handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    return hashlib.sha256(data).hexdigest()


def load_board(root: Path) -> BoardSnapshot:
    """Load the project and make its cards (blocking: call it in a worker thread). Raises
    :class:`ProjectError` (its paragraph names the file and the problem) when it does not load.
    The token is the digest of the storyboard's bytes read before the board (compared again
    after; a file that changed meanwhile is read once more), so a page never holds a token
    newer than the board it shows: an edit made against an older board is refused."""
    from storycore.project import load_project

    for _attempt in range(3):
        before = stamps(root)
        token = _storyboard_digest(root)
        project = load_project(root)
        if _storyboard_digest(root) == token:
            break
    cards = tuple(board_cards(project))
    title = project.storyboard.get("title") or project.data.get("title") or project.project_id
    return BoardSnapshot(
        cards=cards,
        digests={card.shot_id: card_digest(card) for card in cards},
        order=tuple(card.shot_id for card in cards),
        token=token,
        title=str(title)[:500],
        project_id=project.project_id,
        stamps=before,
        by_id={card.shot_id: card for card in cards},
    )


# ----------------------------------------------------------------------------- live.json
def _int(value: Any, low: int = 0) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(low, min(value, 2**53))


def _text(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _preview(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 300 or not value.startswith(_PREVIEWS):
        return None
    name = value[len(_PREVIEWS) :]
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or not is_safe_relative(name)
    ):
        return None
    return value


def _panel(key: str, raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    fraction = raw.get("fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        fraction = 0.0
    state = raw.get("state")
    return {
        "shot_id": _text(raw.get("shot_id"), 200) or key.rpartition("#")[0] or key,
        "take": _int(raw.get("take"), 1) or 1,
        "state": state if state in ("submitted", "running") else "running",
        "fraction": min(1.0, max(0.0, float(fraction))) if fraction == fraction else 0.0,
        "step": _int(raw.get("step")),
        "steps": _int(raw.get("steps")),
        "backend": _text(raw.get("backend")),
        "preview": _preview(raw.get("preview")),
        "preview_count": _int(raw.get("preview_count")) or 0,
    }


def _alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    import psutil

    try:
        return bool(psutil.pid_exists(pid))
    except (OSError, ValueError):
        return True


def read_live(root: Path) -> dict[str, Any] | None:
    """What ``.storycore/live.json`` says, checked: ``{"running", "pid", "run_id", "profile",
    "total", "to_render", "done", "failed", "skipped", "panels"}``; ``None`` when there is no
    such file (no render ran here yet). A file that is no plain file, too big or no JSON object
    is ``None`` too (a debug line). A run whose process is gone (killed) reads as not running.
    Blocking: call it in a worker thread."""
    path = root / STATE_DIR / LIVE_NAME
    if not os.path.lexists(path):
        return None
    try:
        fd = open_state_file(root, path, os.O_RDONLY | getattr(os, "O_BINARY", 0), what="live")
    except (OSError, StoryCoreError) as exc:
        _log.debug("live status not read: %s", exc)
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_LIVE_BYTES + 1)
    if len(data) > MAX_LIVE_BYTES:
        _log.debug("live status not read: more than %d bytes", MAX_LIVE_BYTES)
        return None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    panels: dict[str, dict[str, Any]] = {}
    items = raw.get("panels")
    for key, value in items.items() if isinstance(items, dict) else ():
        if len(panels) >= MAX_LIVE_PANELS:
            break
        panel = _panel(key[:200], value)
        if panel is not None:
            panels[key[:200]] = panel
    pid = _int(raw.get("pid"))
    running = raw.get("running") is True and _alive(pid)
    return {
        "running": running,
        "pid": pid,
        "run_id": _text(raw.get("run_id"), 64),
        "profile": _text(raw.get("profile"), 100),
        "total": _int(raw.get("total")) or 0,
        "to_render": _int(raw.get("to_render")) or 0,
        "done": _int(raw.get("done")) or 0,
        "failed": _int(raw.get("failed")) or 0,
        "skipped": _int(raw.get("skipped")) or 0,
        "panels": panels if running else {},
    }


# ----------------------------------------------------------------------------- watching
class _StopFlag:
    """The ``stop_event`` handed to ``watchfiles.awatch``: ``stop``'s state, and a signal
    that the watch is in place. The watch's thread asks ``is_set()`` every ``step`` ms, from
    the moment its OS watches exist: the first question of a new watch sets ``ready`` (so a
    change made right after the feed started is not missed)."""

    def __init__(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        self._stop = stop
        self._ready = ready
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def is_set(self) -> bool:
        loop, self._loop = self._loop, None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._ready.set)
        return self._stop.is_set()

    def set(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()


class ProjectWatch:
    """The project's file changes, as sets of names (``"project.json"``,
    ``".storycore/live.json"``, ...), until ``stop`` is set. ``prepare()`` first (it makes
    ``.storycore`` when missing, inside the project; a ``.storycore`` that leads out is not
    watched and :attr:`problem` says why)."""

    def __init__(
        self,
        root: Path,
        stop: asyncio.Event,
        *,
        debounce_ms: int = 100,
        step_ms: int = 50,
        force_polling: bool | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.state = self.root / STATE_DIR
        self.stop = stop
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.force_polling = force_polling
        self.problem: str | None = None
        self.ready = asyncio.Event()  # set once the OS watch is in place (each start)
        self._watch_state = False
        self._flag = _StopFlag(stop, self.ready)

    async def prepare(self) -> None:
        try:
            await asyncio.to_thread(mkdirs_inside, self.root, self.state, what="state folder")
        except (OSError, StoryCoreError) as exc:
            self._watch_state = False
            self.problem = exc.paragraph() if isinstance(exc, StoryCoreError) else str(exc)
            return
        self._watch_state = True
        self.problem = None

    def _name(self, path: str) -> str | None:
        folder, name = os.path.split(path)
        if folder == str(self.root) and name in _ROOT_NAMES:
            return name
        if folder == str(self.state) and name in _STATE_NAMES:
            return f"{STATE_DIR.as_posix()}/{name}"
        return None

    def _keep(self, _change: object, path: str) -> bool:
        return self._name(path) is not None

    async def changes(self) -> AsyncIterator[set[str]]:
        """Batches of changed names; ends when ``stop`` is set (within ``step_ms``). When the
        state folder itself changes (removed, made again) the watch starts again on it."""
        from watchfiles import awatch

        while not self.stop.is_set():
            paths = [self.root, *([self.state] if self._watch_state else [])]
            self.ready.clear()
            self._flag.arm(asyncio.get_running_loop())
            restart = False
            watch = awatch(
                *paths,
                watch_filter=self._keep,
                debounce=self.debounce_ms,
                step=self.step_ms,
                stop_event=self._flag,
                recursive=False,
                force_polling=self.force_polling,
            )
            async with contextlib.aclosing(watch):
                async for batch in watch:
                    names = {n for n in (self._name(path) for _change, path in batch) if n}
                    restart = STATE_DIR.name in names
                    if names:
                        yield names
                    if restart:
                        break
            if not restart:
                return
            await self.prepare()

    async def wait_stop(self, seconds: float) -> None:
        """Sleep ``seconds`` or until stopped (a bounded pause before trying again)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()
