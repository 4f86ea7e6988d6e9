"""Reliability scenarios: shared accounting (finished / lost / rendered twice) and the report.

Every scenario ends with :func:`account`, which reads the truth from two sides:

* the project: every shot must have exactly one manifest record whose file has the recorded
  sha256, ``project.json`` must load, and the journal must hold no open prompt;
* the servers: every finished render leaves a ``SaveImage`` file in the server's output folder
  (``storycore/<project>/<shot>/...``); a shot with two such files was rendered twice. This
  counts what killed servers did too, since their folders stay on disk.

:func:`report` appends one line per scenario to ``tests/reliability/last_report.json`` and
records it as a junit property.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storycore._fsutil import atomic_write_json
from storycore.journal import Journal
from storycore.manifest import records
from storycore.project import load_project
from tests.manager._support import free_port

REPORT_PATH = Path(__file__).parent / "last_report.json"


@dataclass
class Account:
    scenario: str
    faults: int
    panels: int
    finished: int
    lost: int
    twice: int
    open_prompts: int
    server_renders: int
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.scenario}: faults={self.faults} panels={self.panels} "
            f"finished={self.finished} lost={self.lost} twice={self.twice}"
        )


def server_renders(output_dirs: Iterable[Path]) -> Counter[str]:
    """How many finished renders each shot has on the servers (files saved by SaveImage)."""
    counts: Counter[str] = Counter()
    for out in output_dirs:
        for path in out.glob("storycore/*/*/*.png"):
            counts[path.parent.name] += 1
    return counts


def account(
    scenario: str,
    root: Path,
    shots: Iterable[str],
    output_dirs: Iterable[Path],
    *,
    faults: int,
    **detail: Any,
) -> Account:
    """Finished, lost and rendered-twice counts for ``root`` after a scenario."""
    shots = list(shots)
    project = load_project(root)  # must always load
    per_shot = Counter(r.shot_id for r in records(project))
    finished = 0
    for rec in records(project):
        data = (root / rec.path).read_bytes()
        if hashlib.sha256(data).hexdigest() == rec.sha256 and len(data) == rec.size:
            finished += 1
    renders = server_renders(output_dirs)
    twice = sum(max(0, n - 1) for n in per_shot.values())
    twice += sum(max(0, n - 1) for n in renders.values())
    result = Account(
        scenario=scenario,
        faults=faults,
        panels=len(shots),
        finished=finished,
        lost=sum(1 for s in shots if per_shot[s] == 0),
        twice=twice,
        open_prompts=len(Journal(root).open_prompts()),
        server_renders=sum(renders.values()),
        detail=detail,
    )
    return result


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Callable[[Account], None]:
    """Record a scenario's account (junit property + ``last_report.json``)."""

    def write(acc: Account) -> None:
        record_property("reliability", acc.line())
        data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(REPORT_PATH.read_text())
        data[acc.scenario] = {**asdict(acc), "line": acc.line(), "at": time.time()}
        atomic_write_json(REPORT_PATH, dict(sorted(data.items())))

    return write


def shot_ids(n: int) -> list[str]:
    return [f"shot_{i:02d}" for i in range(1, n + 1)]


# ------------------------------------------------------------------ emulator child processes
@dataclass
class EmulatorProcess:
    proc: asyncio.subprocess.Process
    url: str
    output_dir: Path

    def kill9(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


async def _wait_up(url: str, limit: float = 20.0) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(limit):
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(
                    url + "/system_stats", timeout=aiohttp.ClientTimeout(total=1)
                ) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def emulator_process(base: Path, step_seconds: float) -> AsyncIterator[EmulatorProcess]:
    """``python -m storycore.emulator`` as a real child process on a free port."""
    port = free_port()
    out = base / "output"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore.emulator",
        "--port",
        str(port),
        "--step-seconds",
        str(step_seconds),
        "--output-directory",
        str(out),
        "--input-directory",
        str(base / "input"),
        "--temp-directory",
        str(base / "temp"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    emu = EmulatorProcess(proc, f"http://127.0.0.1:{port}", out)
    try:
        await _wait_up(emu.url)
        yield emu
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
