"""The CLI killed with SIGKILL again and again, and a disk that fills up during a download.

Both end with a clean rerun; the account (conftest) must show nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import storycore.engine._outputs as outputs_mod
from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import EngineEvent, ImageEngine, PanelDone, RenderRequest
from storycore.errors import StoryCoreError
from storycore.journal import Journal
from tests.engine.conftest import Recorder, fast_settings, make_project
from tests.reliability.conftest import Account, account, shot_ids

Report = Callable[[Account], None]


def _journal_lines(root: Path) -> int:
    try:
        return sum(1 for _ in Journal(root).events())
    except (OSError, ValueError):
        return 0


async def test_cli_killed_with_sigkill_three_times_then_rerun(
    tmp_path: Path, report: Report
) -> None:
    rng = random.Random(7)
    root = make_project(tmp_path, 12)
    env = dict(os.environ)
    env.update(
        {
            "STORYCORE_RENDER__STEPS": "3",
            "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
            "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
        }
    )
    kills: list[int] = []
    async with Emulator(EmulatorOptions(step_seconds=0.04)) as emu:
        for _ in range(3):
            # Kill at a different phase each time: after 1 to 6 more journal lines
            # (upload / submit / accepted / done), i.e. mid-submission, mid-render or mid-save.
            target = _journal_lines(root) + rng.randint(1, 6)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "storycore",
                "generate-images",
                "--project",
                str(root),
                "--backend",
                emu.url,
                "--json",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
            try:
                async with asyncio.timeout(60):
                    while _journal_lines(root) < target and proc.returncode is None:
                        with contextlib.suppress(TimeoutError):  # poll, or see it exit
                            await asyncio.wait_for(proc.wait(), 0.005)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()
            kills.append(proc.returncode or 0)
        summary = await ImageEngine(fast_settings()).render(
            RenderRequest(root, backends=(emu.url,))
        )
        executed = list(emu.executed_prompt_ids)
        acc = account(
            "CLI SIGKILL x3 then rerun",
            root,
            shot_ids(12),
            [emu.output_dir],
            faults=sum(1 for code in kills if code == -signal.SIGKILL),
            counts=summary.counts,
            executed=len(executed),
        )
        report(acc)
    assert kills.count(-signal.SIGKILL) >= 2, kills  # a very fast CLI may finish a round
    assert len(executed) == len(set(executed)), "a prompt ran twice"
    assert acc.lost == 0 and acc.twice == 0 and acc.finished == 12, acc
    assert acc.open_prompts == 0, acc


# ------------------------------------------------------------------ disk full
@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[bool]:
    """Mount a small tmpfs at ``where`` (root only); yields False when that is not possible."""
    where.mkdir(parents=True)
    if os.geteuid() != 0 or os.environ.get("TEST_NO_TMPFS"):
        yield False
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False, timeout=10)


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until the file system is full."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(chunk)
    return filler


class _FullDisk:
    """Fallback when no tmpfs can be mounted: writing a rendered image into the project raises
    ENOSPC once armed (the OS seam of the engine's image writes)."""

    def __init__(self) -> None:
        self.armed = False
        self.hits = 0

    def writer(self, original: Callable[..., None]) -> Callable[..., None]:
        def write(path: Path, data: bytes, **kwargs: Any) -> None:
            if self.armed and path.suffix == ".png":
                self.hits += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            original(path, data, **kwargs)

        return write

    def streamer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """The same for a render streamed into the project (``_outputs._render_temp``)."""

        @contextlib.contextmanager
        def stream(root: Path, path: Path) -> Iterator[Any]:
            if self.armed and path.suffix == ".png":
                self.hits += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            with original(root, path) as out:
                yield out

        return stream


async def test_disk_fills_up_during_downloads_then_rerun(
    tmp_path: Path, report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _tmpfs(tmp_path / "disk", "4m") as mounted:
        base = tmp_path / "disk"
        root = make_project(base, 8)
        fake = _FullDisk()
        if not mounted:
            monkeypatch.setattr(
                outputs_mod, "atomic_write_bytes", fake.writer(outputs_mod.atomic_write_bytes)
            )
            monkeypatch.setattr(
                outputs_mod, "_render_temp", fake.streamer(outputs_mod._render_temp)
            )
        filler: list[Path] = []
        async with Emulator(EmulatorOptions(step_seconds=0.03)) as emu:

            def hook(event: EngineEvent) -> None:
                if isinstance(event, PanelDone) and not filler and not fake.armed:
                    if mounted:
                        filler.append(_fill(base))
                    else:
                        fake.armed = True

            first_error: str | None = None
            try:
                first = await ImageEngine(fast_settings(), on_event=Recorder(hook)).render(
                    RenderRequest(root, backends=(emu.url,))
                )
                first_counts: dict[str, int] = dict(first.counts)
            except (StoryCoreError, OSError) as err:  # a clear error is acceptable; a crash isn't
                first_error = f"{type(err).__name__}: {err}"
                first_counts = {}
            # Free the disk, then run again: everything must end up rendered exactly once.
            for path in filler:
                path.unlink()
            fake.armed = False
            second = await ImageEngine(fast_settings()).render(
                RenderRequest(root, backends=(emu.url,))
            )
            executed = list(emu.executed_prompt_ids)
            acc = account(
                "disk full during downloads" + ("" if mounted else " (patched ENOSPC)"),
                root,
                shot_ids(8),
                [emu.output_dir],
                faults=1,
                first_run=first_counts,
                first_error=first_error,
                second_run=dict(second.counts),
                executed=len(executed),
                tmpfs=mounted,
            )
            report(acc)
        assert filler or fake.hits
        assert len(executed) == len(set(executed)), "a prompt ran twice"
        assert acc.lost == 0 and acc.twice == 0 and acc.finished == 8, acc
        assert acc.open_prompts == 0, acc
