"""Is a recorded pid still the server StoryCore started? Pid, create time and command line.

A pid is reused by the operating system; a pidfile can be stale, copied from another machine or
written by hand. Before ``comfyui stop`` or ``restart`` signals anything, the process with the
recorded pid must have been created at the recorded time, run the recorded command line, and
the server's URL, when something answers there, must answer as ComfyUI (its ``/system_stats``
shape). Otherwise nothing is signalled and the error says how to stop the process by hand.
(comfy-cli's ``stop --port`` proves the same facts before it signals.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from storycore.errors import ManagerError

if TYPE_CHECKING:
    from storycore.comfyui._health_core import ProbeResult
    from storycore.comfyui.process import PidRecord

__all__ = [
    "Identity",
    "check_identity",
    "check_url_answer",
    "identity_of",
    "refusal",
    "same_command",
]

_CREATE_TIME_TOLERANCE = 0.05  # seconds; the same process always reports the same value


@dataclass(frozen=True)
class Identity:
    """The outcome of checking a pidfile's pid against the running processes.

    ``matches``: the pid, its create time and its command line are the recorded ones (it may
    be signalled). ``unproven``: a process with that pid and create time runs, but its command
    line is not the recorded one, or the record has none, or it cannot be read: it is left
    alone and the pidfile kept, since it may still be the user's server. Otherwise the pid is
    gone or reused (a stale pidfile).
    """

    pid: int
    alive: bool
    matches: bool
    reason: str
    name: str | None = None
    unproven: bool = False
    cmdline: tuple[str, ...] = ()


def check_identity(pid: int, create_time: float, cmdline: Sequence[str] | None = None) -> Identity:
    """Is ``pid`` still the process that was created at ``create_time`` running ``cmdline``?

    A dead pid, a zombie, or a pid whose create time differs (reused by another program) never
    matches. With ``cmdline`` given (the record's; empty for a record without one) the running
    command line must be the same too, else the identity is ``unproven``.
    """
    try:
        proc = psutil.Process(pid)
        actual = proc.create_time()
        status = proc.status()
    except psutil.NoSuchProcess:
        return Identity(pid, alive=False, matches=False, reason=f"process {pid} is gone")
    except psutil.AccessDenied:
        return Identity(pid, alive=True, matches=False, reason=f"process {pid} cannot be inspected")
    name: str | None
    try:
        name = proc.name()
    except psutil.Error:
        name = None
    if status == psutil.STATUS_ZOMBIE:
        return Identity(
            pid, alive=False, matches=False, reason=f"process {pid} has exited", name=name
        )
    if abs(actual - create_time) > _CREATE_TIME_TOLERANCE:
        return Identity(
            pid,
            alive=True,
            matches=False,
            reason=f"pid {pid} now belongs to another program ({name or 'unknown'}, "
            "started at another time)",
            name=name,
        )
    if cmdline is None:
        return Identity(pid, alive=True, matches=True, reason="same process", name=name)
    return _check_cmdline(proc, tuple(cmdline), name)


def _check_cmdline(proc: psutil.Process, recorded: tuple[str, ...], name: str | None) -> Identity:
    pid = proc.pid
    try:
        running = tuple(proc.cmdline())
    except psutil.Error:
        return Identity(
            pid,
            alive=True,
            matches=False,
            unproven=True,
            reason=f"the command line of pid {pid} cannot be read",
            name=name,
        )
    if not recorded:
        return Identity(
            pid,
            alive=True,
            matches=False,
            unproven=True,
            reason=f"the pidfile of pid {pid} holds no command line (an older StoryCore wrote "
            "it), so nothing proves that the process is the server StoryCore started",
            name=name,
            cmdline=running,
        )
    if not same_command(running, recorded):
        return Identity(
            pid,
            alive=True,
            matches=False,
            unproven=True,
            reason=f"pid {pid} runs `{_shown(running)}`, not the recorded server "
            f"`{_shown(recorded)}`",
            name=name,
            cmdline=running,
        )
    return Identity(
        pid, alive=True, matches=True, reason="same process", name=name, cmdline=running
    )


def same_command(running: Sequence[str], recorded: Sequence[str]) -> bool:
    """The same command line: every argument equal, the program itself equal or the same file
    (``python3`` started through a link to ``python3.11`` reads back either way)."""
    if len(running) != len(recorded) or not running:
        return False
    if tuple(running[1:]) != tuple(recorded[1:]):
        return False
    first, wanted = running[0], recorded[0]
    if first == wanted:
        return True
    with contextlib.suppress(OSError, ValueError):
        return os.path.realpath(first) == os.path.realpath(wanted)
    return False


def _shown(command: Sequence[str], limit: int = 160) -> str:
    text = " ".join(command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def identity_of(record: PidRecord) -> Identity:
    """The recorded server's identity now: same pid, create time and command line?"""
    return check_identity(record.pid, record.create_time, record.recorded_cmdline)


async def check_url_answer(record: PidRecord, pidfile: Path) -> ProbeResult:
    """Probe the recorded server's URL before signalling it; raise :func:`refusal` when
    something answers there, but not as ComfyUI (a ComfyUI in trouble answers 5xx, or not at
    all, and may be stopped)."""
    from storycore.comfyui.health import probe_system_stats
    from storycore.comfyui.install import server_url

    url = server_url(record.host, record.port)
    probe = await probe_system_stats(url, timeout=1.0)
    if probe.answered and probe.stats is None and (probe.status or 0) < 500:
        raise refusal(record.pid, pidfile, f"{url} answers, but not as ComfyUI ({probe.error})")
    return probe


def refusal(pid: int, pidfile: Path, why: str) -> ManagerError:
    """The error for a stop or restart that will not signal ``pid`` (exit 5)."""
    return ManagerError(
        f"did not stop pid {pid}: {why}; nothing was signalled",
        where=str(pidfile),
        hint=f"if pid {pid} is the ComfyUI you want stopped, stop it yourself (`kill {pid}`; "
        f"on Windows `taskkill /PID {pid} /T`); StoryCore then drops the old record by itself",
    )
