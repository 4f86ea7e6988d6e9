"""The live board: what changed in a project, as messages to every open review page.

:class:`BoardFeed` watches the project (:class:`~storycore.review._watch.ProjectWatch`: the
OS's file notifications, never a polling loop), reloads it off the event loop when
``project.json`` or ``storyboard.json`` changed, compares each card's digest with the last one
sent, and publishes:

- ``{"type": "card", "card": {...}}`` for each card whose digest changed;
- ``{"type": "board", "total", "order", "token"}`` when shots were added, removed or reordered,
  or the storyboard changed (``token``: the storyboard's, for the next edit);
- ``{"type": "progress", "running", "panels", "done", "total", "profile", ...}`` when
  ``.storycore/live.json`` changed (whoever renders: this server or another process);
- ``{"type": "error", "text"}`` when the project does not load now (a storyboard saved half
  way through an edit): the last good board stays, the text is the error's paragraph (the
  file and the problem), sent once per problem;
- ``{"type": "resync", "total", "token"}`` to a subscriber that fell too far behind: its
  queued messages were dropped; it reads the board again (``/api/board``).

Each subscriber has a bounded queue. A newer progress message replaces an older one still
queued (a slow page loses old progress, never the last); a newer card message of a shot
replaces the older one; past the bound the queue becomes one ``resync``. Closing the feed ends
every subscription at once and stops the watch within a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Any

from storycore.errors import StoryCoreError
from storycore.review._cards import Card
from storycore.review._watch import (
    BoardSnapshot,
    ProjectWatch,
    Stamp,
    live_stamp,
    load_board,
    read_live,
    stamps,
)

__all__ = ["BoardFeed", "Subscription"]

_log = logging.getLogger("storycore.review")
Message = dict[str, Any]


class Subscription:
    """One page's messages: an async iterator (``async for message in subscription``) that
    ends when the feed closes or :meth:`close` is called. Also an async context manager."""

    def __init__(self, feed: BoardFeed, limit: int) -> None:
        self._feed = feed
        self._limit = max(2, limit)
        self._pending: OrderedDict[tuple[str, ...], Message] = OrderedDict()
        self._ready = asyncio.Event()
        self._closed = False
        self._serial = itertools.count()
        self.resyncs = 0

    def push(self, message: Message) -> None:
        if self._closed:
            return
        kind = message["type"]
        if kind == "progress":
            key: tuple[str, ...] = ("progress",)
        elif kind == "card":
            key = ("card", str(message["card"].get("shot_id")))
        else:
            key = (kind, str(next(self._serial)))
        self._pending.pop(key, None)  # the newer one goes to the end, after what came between
        if len(self._pending) >= self._limit:
            self._pending.clear()
            self.resyncs += 1
            self._pending[("resync",)] = self._feed.resync_message()
            if kind in ("card", "board"):  # the resync covers them; progress and errors do not
                self._ready.set()
                return
        self._pending[key] = message
        self._ready.set()

    def pending(self) -> int:
        return len(self._pending)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._pending.popitem(last=False)[1]

    def close(self) -> None:
        """End the subscription: a waiting ``__anext__`` ends at once."""
        self._closed = True
        self._pending.clear()
        self._ready.set()
        self._feed._subscriptions.discard(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BoardFeed:
    """The project at ``root`` as a live feed of messages (see the module). Use it as an async
    context manager: entering loads the board (a project that does not load is a
    :class:`~storycore.errors.ProjectError`) and starts the watch; leaving stops it."""

    def __init__(
        self,
        root: Path,
        *,
        debounce_ms: int = 100,
        step_ms: int = 50,
        queue_limit: int = 512,
        close_wait: float = 2.0,
        force_polling: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.queue_limit = queue_limit
        self.close_wait = close_wait
        self._stop = asyncio.Event()
        self._watch = ProjectWatch(
            self.root,
            self._stop,
            debounce_ms=debounce_ms,
            step_ms=step_ms,
            force_polling=force_polling,
        )
        self._snapshot: BoardSnapshot | None = None
        self._live: Message | None = None
        self._live_stamp: Stamp = None
        self._failed_stamps: tuple[Stamp, Stamp] | None = None
        self._error: str | None = None
        self._subscriptions: set[Subscription] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    # ------------------------------------------------------------------ reading
    @property
    def snapshot(self) -> BoardSnapshot:
        if self._snapshot is None:
            raise RuntimeError("BoardFeed is used outside its `async with` block")
        return self._snapshot

    def cards(self) -> list[Card]:
        """The board's cards now (in order)."""
        return list(self.snapshot.cards)

    def card(self, shot_id: str) -> Card | None:
        return self.snapshot.by_id.get(shot_id)

    @property
    def token(self) -> str:
        """The storyboard's token (sha256 of the file the cards were made from)."""
        return self.snapshot.token

    @property
    def progress(self) -> Message:
        """The last progress message (``running`` false when no render runs)."""
        return self._live or _progress_message(None)

    @property
    def error(self) -> str | None:
        """Why the project does not load now (the last good board is shown), or ``None``."""
        return self._error

    def resync_message(self) -> Message:
        snapshot = self._snapshot
        total = len(snapshot.cards) if snapshot else 0
        return {"type": "resync", "total": total, "token": snapshot.token if snapshot else ""}

    def subscribe(self) -> Subscription:
        """A new subscription, receiving every message from now on (and at once the current
        progress, when a render runs)."""
        subscription = Subscription(self, self.queue_limit)
        if self._stop.is_set():
            subscription.close()
            return subscription
        self._subscriptions.add(subscription)
        if self._live is not None and self._live.get("running"):
            subscription.push(self._live)
        return subscription

    # ------------------------------------------------------------------ life
    async def __aenter__(self) -> BoardFeed:
        self._snapshot = await asyncio.to_thread(load_board, self.root)
        await self._watch.prepare()
        if self._watch.problem:
            _log.warning("live progress is not watched: %s", self._watch.problem)
        self._live_stamp = await asyncio.to_thread(live_stamp, self.root)
        live = await asyncio.to_thread(read_live, self.root)
        self._live = _progress_message(live)
        self._task = asyncio.create_task(self._run())
        # Changes made from now on are seen, and one made before the watch began is too (the
        # stamps are compared once it is in place).
        ready = asyncio.create_task(self._watch.ready.wait())
        await asyncio.wait(
            {ready, self._task}, timeout=self.close_wait * 2, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if not self._watch.ready.is_set():
            _log.warning("the project watch did not start within %.0f s", self.close_wait * 2)
        await self._sync(force=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching and end every subscription (bounded by ``close_wait``)."""
        self._stop.set()
        for subscription in list(self._subscriptions):
            subscription.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            _done, late = await asyncio.wait({task}, timeout=self.close_wait)
            for pending in late:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    async def refresh(self) -> None:
        """Reload now, whatever the stamps say, and publish what changed (after an action: the
        answer and every page agree at once)."""
        await self._sync(force=True)

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                async for _names in self._watch.changes():
                    failures = 0
                    await self._sync(force=False)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the OS watch itself failed (folder gone, no inotify)
                failures += 1
                text = f"{self.root}: the project is not watched for changes ({exc})"
                _log.warning("%s", text)
                self._send_error(text)
                if failures >= 2:
                    self._watch.force_polling = True  # the OS notifications do not work here
                await self._watch.wait_stop(min(10.0, 1.0 * failures))

    # ------------------------------------------------------------------ reloading
    async def _sync(self, *, force: bool) -> None:
        async with self._lock:
            if self._stop.is_set() and not force:
                return
            board, now, live = await asyncio.to_thread(self._read, force)
            if isinstance(board, BoardSnapshot):
                self._board_changed(board)
            elif board is not None:
                self._failed_stamps = now  # tried once per change of the files
                self._send_error(board.paragraph())
            if live is not None:
                message = _progress_message(live[1])
                self._live_stamp = live[0]
                if message != self._live:
                    self._live = message
                    self._publish(message)

    def _read(
        self, force: bool
    ) -> tuple[
        BoardSnapshot | StoryCoreError | None,
        tuple[Stamp, Stamp],
        tuple[Stamp, dict[str, Any] | None] | None,
    ]:
        """In a worker thread (the caller holds the lock): the board when its files changed
        (or the error that keeps it from loading), the files' stamps, and live.json when it
        changed. Changes nothing."""
        board: BoardSnapshot | StoryCoreError | None = None
        now = stamps(self.root)
        known = self._snapshot.stamps if self._snapshot else None
        if force or (now != known and now != self._failed_stamps):
            try:
                board = load_board(self.root)
            except StoryCoreError as err:
                board = err
            except OSError as exc:
                board = StoryCoreError(f"{self.root}: the project cannot be read ({exc})")
        stamp = live_stamp(self.root)
        live = (stamp, read_live(self.root)) if force or stamp != self._live_stamp else None
        return board, now, live

    def _board_changed(self, new: BoardSnapshot) -> None:
        old = self._snapshot
        self._snapshot = new
        self._failed_stamps = None
        self.reloads += 1
        if self._error is not None:
            self._error = None
        if old is None:
            return
        changed = [c for c in new.cards if old.digests.get(c.shot_id) != new.digests[c.shot_id]]
        if new.order != old.order or new.token != old.token:
            self._publish(
                {
                    "type": "board",
                    "total": len(new.order),
                    "order": list(new.order),
                    "token": new.token,
                }
            )
        if len(changed) > self.queue_limit // 2:  # most of the board: read it again
            self._publish(self.resync_message())
            return
        for card in changed:
            self._publish({"type": "card", "card": card.to_json()})

    def _send_error(self, text: str) -> None:
        if text == self._error:
            return
        self._error = text
        self._publish({"type": "error", "text": text})

    def _publish(self, message: Message) -> None:
        for subscription in list(self._subscriptions):
            subscription.push(message)


def _progress_message(live: dict[str, Any] | None) -> Message:
    if live is None:
        return {
            "type": "progress",
            "running": False,
            "panels": {},
            "done": 0,
            "total": 0,
            "to_render": 0,
            "failed": 0,
            "skipped": 0,
            "profile": None,
            "run_id": None,
        }
    return {
        "type": "progress",
        "running": live["running"],
        "panels": live["panels"],
        "done": live["done"],
        "total": live["total"],
        "to_render": live["to_render"],
        "failed": live["failed"],
        "skipped": live["skipped"],
        "profile": live["profile"],
        "run_id": live["run_id"],
    }
