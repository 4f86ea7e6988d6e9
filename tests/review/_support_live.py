"""Helpers for the live status and feed tests: bounded waits on a feed's messages, a reader of
``.storycore/live.json`` from outside the engine, and a child process that edits a project
file the way another program would (a temporary file renamed over it)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storycore.review._feed import Subscription

Message = dict[str, Any]


class Collector:
    """Reads a subscription in a task; every message kept in order."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self.subscription:
            self.messages.append(message)
            self._arrived.set()

    def of(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m["type"] == kind]

    async def wait_for(self, match: Callable[[Message], bool], within: float = 15.0) -> Message:
        """The first message (already received or still to come) that ``match`` accepts."""

        async def look() -> Message:
            seen = 0
            while True:
                for message in self.messages[seen:]:
                    if match(message):
                        return message
                seen = len(self.messages)
                self._arrived.clear()
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(look(), within)
        except TimeoutError:
            raise AssertionError(f"no such message in {within} s; got {self.messages}") from None

    async def quiet(self, seconds: float) -> list[Message]:
        """The messages that arrive in the next ``seconds``."""
        before = len(self.messages)
        await asyncio.sleep(seconds)
        return self.messages[before:]

    async def close(self) -> None:
        self.subscription.close()
        await asyncio.wait_for(self.task, 5)


def card_of(
    shot_id: str, test: Callable[[Message], bool] = lambda card: True
) -> Callable[[Message], bool]:
    return lambda m: m["type"] == "card" and m["card"]["shot_id"] == shot_id and test(m["card"])


class LiveWatcher:
    """Reads ``.storycore/live.json`` every 10 ms from outside the engine: each state seen, and
    any sighting that was not a whole JSON object (an atomic write never shows one)."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".storycore" / "live.json"
        self.states: list[Message] = []
        self.broken: list[bytes] = []

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self._look)
            await asyncio.sleep(0.01)

    def _look(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            state = json.loads(data)
        except ValueError:
            self.broken.append(data)
            return
        if not self.states or self.states[-1] != state:
            self.states.append(state)


def read_live_file(root: Path) -> Message:
    data: Message = json.loads((root / ".storycore" / "live.json").read_bytes())
    return data


async def child_edit(path: Path, code: str, within: float = 30.0) -> None:
    """Run ``code`` in a child Python with ``data`` = the JSON of ``path``; the child writes
    ``data`` back atomically (temporary file + rename), as another program's save would."""
    script = textwrap.dedent(
        """
        import json, os, sys
        path = sys.argv[1]
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        {code}
        tmp = path + ".child.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, path)
        """
    ).format(code=textwrap.dedent(code).strip())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode == 0, err.decode()


async def wait_until(test: Callable[[], bool], within: float = 10.0) -> None:
    started = time.monotonic()
    while not test():
        assert time.monotonic() - started < within, "condition not met in time"
        await asyncio.sleep(0.02)
