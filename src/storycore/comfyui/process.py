"""Operating-system side of the manager: spawn detached, pidfiles, identity, tree termination, logs.

Everything here is synchronous and bounded; the async manager calls the slow parts through
``asyncio.to_thread``.

* :func:`spawn_detached` starts the server in its own session (POSIX) or process group
  (Windows, ``CREATE_NEW_PROCESS_GROUP``) with stdout and stderr appended to a log file that is
  rotated before each start once it is larger than ``max_bytes``.
* :class:`PidRecord` is the versioned pidfile, written atomically.
* :func:`check_identity` proves that a pid is still *our* process: the pid, its create time and
  its command line all match the record, so a pid reused by another program, or a record that
  names a stranger, never gets a process signalled.
* :func:`terminate_tree` stops a process and all its children: polite signal, wait, kill the
  survivors, wait again, and report who is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from storycore._fsutil import atomic_write_json
from storycore.comfyui._identity import Identity, check_identity, same_command
from storycore.comfyui._logfile import rotate_log, tail_lines

__all__ = [
    "PIDFILE_VERSION",
    "Identity",
    "PidRecord",
    "Spawned",
    "TerminationReport",
    "check_identity",
    "describe_port_holder",
    "is_port_open",
    "load_pidfile",
    "record_running_cmdline",
    "remove_pidfile",
    "rotate_log",
    "same_command",
    "spawn_detached",
    "tail_lines",
    "terminate_tree",
    "write_pidfile",
]

PIDFILE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# pidfile


@dataclass(frozen=True)
class PidRecord:
    """What the pidfile says about the server we started."""

    pid: int
    create_time: float
    host: str
    port: int
    command: tuple[str, ...]
    log_path: str
    started_at: float
    log_offset: int = 0
    kind: str = "comfyui"
    cmdline: tuple[str, ...] = ()
    """The command line as the operating system reported it right after the start (what
    :func:`check_identity` compares); empty in records written before StoryCore kept it."""
    version: int = PIDFILE_VERSION

    @property
    def recorded_cmdline(self) -> tuple[str, ...]:
        """The command line to compare: as the OS saw it, else as StoryCore started it."""
        return self.cmdline or self.command

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = list(self.command)
        data["cmdline"] = list(self.cmdline)
        return data

    @classmethod
    def from_json(cls, data: Any) -> PidRecord:
        """Parse a pidfile body; raise ``ValueError`` when it is not one we wrote."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        version = data.get("version")
        if version != PIDFILE_VERSION:
            raise ValueError(f"unknown pidfile version {version!r}")
        try:
            pid = data["pid"]
            port = data["port"]
            if not isinstance(pid, int) or not isinstance(port, int) or pid <= 0:
                raise ValueError("pid and port must be positive integers")
            command = data.get("command", [])
            cmdline = data.get("cmdline", [])
            return cls(
                pid=pid,
                create_time=float(data["create_time"]),
                host=str(data["host"]),
                port=port,
                command=tuple(str(c) for c in command) if isinstance(command, list) else (),
                log_path=str(data.get("log_path", "")),
                started_at=float(data.get("started_at", 0.0)),
                log_offset=int(data.get("log_offset", 0)),
                kind=str(data.get("kind", "comfyui")),
                cmdline=tuple(str(c) for c in cmdline) if isinstance(cmdline, list) else (),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or malformed field: {exc}") from exc


def write_pidfile(path: Path, record: PidRecord) -> None:
    atomic_write_json(path, record.to_json())


def record_running_cmdline(path: Path, record: PidRecord) -> PidRecord:
    """Rewrite the pidfile with the command line ``record``'s process runs now, once the
    server answers: a wrapper (a pyenv shim, a shell script) has exec'd the real program by
    then, and this is what :func:`check_identity` compares later."""
    try:
        running = tuple(psutil.Process(record.pid).cmdline())
    except psutil.Error:
        return record
    if not running or running == record.cmdline:
        return record
    updated = replace(record, cmdline=running)
    write_pidfile(path, updated)
    return updated


def load_pidfile(path: Path) -> tuple[PidRecord | None, str | None]:
    """``(record, None)``, ``(None, None)`` when there is no pidfile, ``(None, why)`` if corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or exc})"
    try:
        return PidRecord.from_json(json.loads(text)), None
    except ValueError as exc:
        return None, f"it is not a StoryCore pidfile ({exc})"


def remove_pidfile(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# ---------------------------------------------------------------------------------------------
# spawning


@dataclass
class Spawned:
    """A server we just started. ``popen`` must be waited for (or handed to the manager)."""

    popen: subprocess.Popen[bytes]
    pid: int
    create_time: float
    log_path: Path
    log_offset: int
    cmdline: tuple[str, ...] = ()


def _banner(command: Sequence[str]) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"\n===== storycore: starting at {stamp}: {' '.join(command)}\n".encode()


def spawn_detached(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    log_max_bytes: int = 10 * 1024 * 1024,
    log_backups: int = 3,
) -> Spawned:
    """Start ``command`` detached from our terminal, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(log_path, log_max_bytes, log_backups)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    log: BinaryIO
    with log_path.open("ab") as log:
        log.write(_banner(command))
        log.flush()
        offset = log.tell()
        popen = subprocess.Popen(
            list(command),
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            **kwargs,
        )
    # Popen returns once the program is executing, so this is its own command line.
    try:
        proc = psutil.Process(popen.pid)
        create_time = proc.create_time()
    except psutil.Error:
        return Spawned(popen, popen.pid, time.time(), log_path, offset, tuple(command))
    try:
        cmdline = tuple(proc.cmdline())
    except psutil.Error:
        cmdline = ()
    return Spawned(popen, popen.pid, create_time, log_path, offset, cmdline or tuple(command))


# ---------------------------------------------------------------------------------------------
# termination


@dataclass(frozen=True)
class TerminationReport:
    """What happened when a process tree was stopped."""

    pid: int
    terminated: tuple[int, ...]
    killed: tuple[int, ...]
    survivors: tuple[int, ...]
    elapsed: float

    @property
    def clean(self) -> bool:
        return not self.survivors

    @property
    def graceful(self) -> bool:
        return not self.killed and not self.survivors


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _signal_polite(root: psutil.Process, procs: Sequence[psutil.Process]) -> None:
    if sys.platform == "win32":
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            root.send_signal(signal.CTRL_BREAK_EVENT)
        for proc in procs[1:]:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
            proc.resume()  # a stopped (suspended) process only sees SIGTERM once continued
    # The server leads its own session: its process group also holds grandchildren whose parent
    # already died (reparented, so no longer in the tree).
    with contextlib.suppress(OSError, psutil.Error):
        if os.getpgid(root.pid) == root.pid:
            os.killpg(root.pid, signal.SIGTERM)


def _kill_group(pgid: int) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _group_members(pgid: int) -> list[psutil.Process]:
    if os.name == "nt":
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def terminate_tree(
    root: psutil.Process, *, graceful_timeout: float, force_kill_timeout: float
) -> TerminationReport:
    """Stop ``root`` and every child: signal, wait ``graceful_timeout``, kill, wait, report.

    The caller must have proved ``root``'s identity first (:func:`check_identity`).
    """
    start = time.monotonic()
    procs = _tree(root)
    is_group_leader = False
    if os.name != "nt":
        with contextlib.suppress(OSError):
            is_group_leader = os.getpgid(root.pid) == root.pid
    _signal_polite(root, procs)
    alive = _wait_gone(procs, graceful_timeout)
    # Children started while we waited, and grandchildren that left the tree.
    extra = {p.pid: p for p in alive}
    if is_group_leader:
        for member in _group_members(root.pid):
            extra.setdefault(member.pid, member)
    for proc in _tree(root) if root.is_running() else []:
        extra.setdefault(proc.pid, proc)
    to_kill = [p for p in extra.values() if _still_running(p)]
    killed: list[int] = []
    for proc in to_kill:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc.pid)
    if is_group_leader and to_kill:
        _kill_group(root.pid)
    survivors: list[int] = []
    if to_kill:
        survivors = [p.pid for p in _wait_gone(to_kill, force_kill_timeout)]
    terminated = tuple(p.pid for p in procs if p.pid not in killed)
    return TerminationReport(
        pid=root.pid,
        terminated=terminated,
        killed=tuple(killed),
        survivors=tuple(survivors),
        elapsed=time.monotonic() - start,
    )


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to exit; return those still running.

    A zombie counts as gone: it no longer runs, only its parent has not collected it yet (the
    parent may be a slow init process when our server was adopted by it).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.01
    while True:
        alive = [p for p in procs if _still_running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)


def _still_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---------------------------------------------------------------------------------------------
# ports


def is_port_open(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    target = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        with socket.create_connection((target, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_port_holder(port: int) -> str:
    """Which process listens on ``port``: ``"name (pid N): cmdline"``, or ``"unknown process"``."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return "unknown process"
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            return "unknown process"
        try:
            proc = psutil.Process(conn.pid)
            cmdline = " ".join(proc.cmdline())
            name = proc.name()
        except psutil.Error:
            return f"process {conn.pid}"
        shown = cmdline if len(cmdline) <= 200 else cmdline[:197] + "..."
        return f"{name} (pid {conn.pid}): {shown}" if shown else f"{name} (pid {conn.pid})"
    return "unknown process"
