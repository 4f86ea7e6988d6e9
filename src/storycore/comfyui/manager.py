"""Start, stop, restart and inspect a local ComfyUI server that StoryCore manages.

The manager keeps its state in one folder (``state_dir``): ``comfyui.pid`` (versioned JSON,
written atomically) and ``comfyui.log`` (the server's stdout and stderr, rotated). It never
signals a process whose identity it has not proved: pid, create time and command line match
the record, and the server's URL, when it answers, answers as ComfyUI. A ComfyUI already
serving the port is adopted (used, not managed); ComfyUI Desktop is found on port 8000 when no
install is configured, and is never managed either.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from storycore.comfyui._identity import check_url_answer, identity_of, refusal
from storycore.comfyui._logfile import follow_lines
from storycore.comfyui._manager_model import (
    ManagerOptions,
    ServerKind,
    ServerState,
    ServerStatus,
    StartResult,
    StopResult,
    VramMode,
    default_state_dir,
    describe_server,
    desktop_port_allowed,
    options_from_settings,
    server_env,
    server_flags,
)
from storycore.comfyui.health import (
    SystemStats,
    fetch_queue_remaining,
    probe_system_stats,
)
from storycore.comfyui.install import (
    DESKTOP_PORT,
    ComfyUIInstall,
    detect_desktop,
    find_install,
    server_url,
)
from storycore.comfyui.process import (
    PidRecord,
    Spawned,
    check_identity,
    describe_port_holder,
    is_port_open,
    load_pidfile,
    record_running_cmdline,
    remove_pidfile,
    spawn_detached,
    tail_lines,
    terminate_tree,
    write_pidfile,
)
from storycore.errors import (
    PortInUse,
    StartupFailed,
    StopFailed,
)

__all__ = [
    "ComfyUIManager",
    "ManagerOptions",
    "ServerState",
    "ServerStatus",
    "StartResult",
    "StopResult",
    "VramMode",
    "default_state_dir",
    "desktop_port_allowed",
    "options_from_settings",
    "server_env",
    "server_flags",
]

_LOG_LINES_ON_FAILURE = 30
_DETACHED: list[subprocess.Popen[bytes]] = []  # servers left running on purpose (see detach)


class ComfyUIManager:
    """Manages the ComfyUI at ``options.host:options.port``.

    ``install`` overrides detection (used for the emulator in ``--mock`` mode and in tests).
    """

    desktop_port: int = DESKTOP_PORT
    """Where ComfyUI Desktop is looked for when no install is configured."""

    def __init__(self, options: ManagerOptions, *, install: ComfyUIInstall | None = None) -> None:
        self.options = options
        self._install = install
        self._popen: subprocess.Popen[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.options.url

    @property
    def state_dir(self) -> Path:
        return self.options.state_folder

    @property
    def pidfile_path(self) -> Path:
        return self.state_dir / "comfyui.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "comfyui.log"

    # -- queries ---------------------------------------------------------------------------
    def record(self) -> PidRecord | None:
        """The pidfile's record if it names a live process that is provably ours."""
        record, _problem = load_pidfile(self.pidfile_path)
        if record is None:
            return None
        self._reap()
        return record if identity_of(record).matches else None

    def is_alive(self) -> bool:
        """True while the managed server process runs (pid and create time match)."""
        return self.record() is not None

    def detach(self) -> None:
        """Let the server outlive this object (the CLI exits while the server keeps running)."""
        if self._popen is not None:
            _DETACHED.append(self._popen)
            self._popen = None

    def _reap(self) -> None:
        # Detached servers stopped since (by any manager) are reaped here, so no zombie and no
        # "subprocess is still running" warning is left behind.
        _DETACHED[:] = [p for p in _DETACHED if p.poll() is None]
        if self._popen is not None and self._popen.poll() is not None:
            self._popen = None

    def resolve_install(self) -> ComfyUIInstall:
        if self._install is not None:
            return self._install
        return find_install(self.options.install_path, self.options.python_executable)

    def command(self, install: ComfyUIInstall | None = None) -> list[str]:
        return (install or self.resolve_install()).command(server_flags(self.options))

    # -- start -----------------------------------------------------------------------------
    async def start(self) -> StartResult:
        """Start the server and wait until ``/system_stats`` answers (or adopt a running one)."""
        began = time.monotonic()
        notes: list[str] = []
        record, problem = load_pidfile(self.pidfile_path)
        if problem is not None:
            remove_pidfile(self.pidfile_path)
            notes.append(f"removed an unreadable pidfile {self.pidfile_path}: {problem}")
        elif record is not None:
            self._reap()
            identity = identity_of(record)
            if identity.matches:
                probe = await probe_system_stats(self.url, timeout=3.0)
                version = probe.stats.comfyui_version if probe.stats else None
                return StartResult(
                    "already-running",
                    self.url,
                    managed=True,
                    message=f"ComfyUI is already running (pid {record.pid}) at {self.url}",
                    pid=record.pid,
                    log_path=Path(record.log_path),
                    pidfile=self.pidfile_path,
                    command=record.command,
                    comfyui_version=version,
                    notes=tuple(notes),
                )
            if identity.unproven:  # kept: `comfyui stop` explains it; a new start replaces it
                notes.append(f"{identity.reason}; StoryCore left that process alone")
            else:
                remove_pidfile(self.pidfile_path)
                notes.append(f"removed a stale pidfile: {identity.reason}; nothing was signalled")

        probe = await probe_system_stats(self.url, timeout=3.0)
        if probe.stats is not None:
            return StartResult(
                "adopted",
                self.url,
                managed=False,
                message=f"a ComfyUI {probe.stats.comfyui_version or ''} is already serving "
                f"{self.url}; using it (StoryCore did not start it and will not stop it)",
                comfyui_version=probe.stats.comfyui_version,
                elapsed=time.monotonic() - began,
                notes=tuple(notes),
            )
        if probe.answered or await asyncio.to_thread(
            is_port_open, self.options.host, self.options.port
        ):
            holder = await asyncio.to_thread(describe_port_holder, self.options.port)
            raise PortInUse(
                f"port {self.options.port} is held by {holder}, which is not a ComfyUI",
                where=self.url,
                hint="Stop that program or choose another comfyui.port",
            )

        desktop = await self._find_desktop()
        if desktop is not None:
            desktop_url = server_url("127.0.0.1", self.desktop_port)
            return StartResult(
                "desktop",
                desktop_url,
                managed=False,
                message=f"nothing answers at {self.url}, but ComfyUI Desktop "
                f"{desktop.comfyui_version or ''} answers at {desktop_url}; using it (StoryCore "
                "does not manage ComfyUI Desktop; set comfyui.port to start your own instead)",
                comfyui_version=desktop.comfyui_version,
                elapsed=time.monotonic() - began,
                notes=tuple(notes),
            )
        install = await asyncio.to_thread(self.resolve_install)
        return await self._spawn_and_wait(install, began, notes)

    async def _find_desktop(self) -> SystemStats | None:
        """ComfyUI Desktop's ``/system_stats`` on its own port, when the port was left at its
        default (``detect_desktop``) and is not Desktop's already."""
        opts = self.options
        if not opts.detect_desktop or opts.port == self.desktop_port:
            return None
        return await detect_desktop(port=self.desktop_port, timeout=2.0)

    async def _spawn_and_wait(
        self, install: ComfyUIInstall, began: float, notes: list[str]
    ) -> StartResult:
        command = self.command(install)
        spawned = await asyncio.to_thread(
            spawn_detached,
            command,
            cwd=install.cwd,
            env=server_env(self.options),
            log_path=self.log_path,
            log_max_bytes=self.options.log_max_bytes,
            log_backups=self.options.log_backups,
        )
        self._popen = spawned.popen
        record = PidRecord(
            pid=spawned.pid,
            create_time=spawned.create_time,
            host=self.options.host,
            port=self.options.port,
            command=tuple(command),
            log_path=str(spawned.log_path),
            started_at=time.time(),
            log_offset=spawned.log_offset,
            kind=install.kind,
            cmdline=spawned.cmdline,
        )
        write_pidfile(self.pidfile_path, record)
        try:
            return await self._wait_ready(install, spawned, record, began, notes)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted while waiting (Ctrl-C): do not leave a half-started server behind.
            self._kill_now(record)
            raise

    def _kill_now(self, record: PidRecord, graceful: float = 2.0, force: float = 2.0) -> None:
        """Stop the server we just started (interrupted, or never ready) and forget it. Its
        pid cannot be reused while our Popen has not reaped it: pid and create time suffice."""
        if check_identity(record.pid, record.create_time).matches:
            terminate_tree(
                psutil.Process(record.pid),
                graceful_timeout=min(self.options.graceful_timeout, graceful),
                force_kill_timeout=min(self.options.force_kill_timeout, force),
            )
        self._reap()
        remove_pidfile(self.pidfile_path)

    async def _wait_ready(
        self,
        install: ComfyUIInstall,
        spawned: Spawned,
        record: PidRecord,
        began: float,
        notes: list[str],
    ) -> StartResult:
        command = list(record.command)
        deadline = time.monotonic() + self.options.startup_timeout
        while True:
            code = spawned.popen.poll()
            if code is not None:
                self._popen = None
                remove_pidfile(self.pidfile_path)
                raise StartupFailed(
                    f"ComfyUI exited with code {code} during start-up",
                    where=str(self.log_path),
                    hint="Fix the install or the arguments and try again"
                    + self._log_excerpt(spawned.log_offset),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await asyncio.to_thread(
                    self._kill_now, record, 5.0, self.options.force_kill_timeout
                )
                raise StartupFailed(
                    f"ComfyUI did not answer /system_stats at {self.url} within "
                    f"{self.options.startup_timeout:g} s and was stopped",
                    where=str(self.log_path),
                    hint="Raise comfyui.startup_timeout if the machine is slow, "
                    "otherwise fix what the log shows" + self._log_excerpt(spawned.log_offset),
                )
            probe = await probe_system_stats(self.url, timeout=max(0.05, min(2.0, remaining)))
            if probe.stats is not None:
                await asyncio.to_thread(record_running_cmdline, self.pidfile_path, record)
                return StartResult(
                    "started",
                    self.url,
                    managed=True,
                    message=f"started ComfyUI ({install.describe()}), pid {spawned.pid}, "
                    f"at {self.url}",
                    pid=spawned.pid,
                    log_path=self.log_path,
                    pidfile=self.pidfile_path,
                    command=tuple(command),
                    comfyui_version=probe.stats.comfyui_version,
                    elapsed=time.monotonic() - began,
                    notes=tuple(notes),
                )
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _log_excerpt(self, offset: int) -> str:
        lines = tail_lines(self.log_path, _LOG_LINES_ON_FAILURE, start_offset=offset)
        if not lines:
            return "; it wrote nothing to its log"
        shown = "\n".join(f"  | {line}" for line in lines)
        return f"; the last lines of its log:\n{shown}\n  (end of log)"

    # -- stop ------------------------------------------------------------------------------
    async def stop(self) -> StopResult:
        """Stop the managed server and its children; never signal an unproven pid."""
        record, problem = load_pidfile(self.pidfile_path)
        if problem is not None:
            remove_pidfile(self.pidfile_path)
            return StopResult(
                "stale-cleaned",
                self.url,
                f"removed an unreadable pidfile ({problem}); nothing was signalled",
                log_path=self.log_path,
            )
        if record is None:
            probe = await probe_system_stats(self.url, timeout=2.0)
            if probe.stats is not None:
                return StopResult(
                    "not-managed",
                    self.url,
                    f"a ComfyUI answers at {self.url}, but StoryCore did not start it; "
                    "stop it where it was started",
                )
            return StopResult("not-running", self.url, f"no managed ComfyUI runs at {self.url}")
        self._reap()
        identity = identity_of(record)
        if identity.unproven:
            raise refusal(record.pid, self.pidfile_path, identity.reason)
        if not identity.matches:
            remove_pidfile(self.pidfile_path)
            return StopResult(
                "stale-cleaned",
                self.url,
                f"removed a stale pidfile: {identity.reason}; nothing was signalled",
                pid=record.pid,
                log_path=Path(record.log_path),
            )
        notes: list[str] = []
        probe = await check_url_answer(record, self.pidfile_path)
        if probe.stats is None:
            notes.append(f"pid {record.pid} did not answer /system_stats ({probe.error})")
        report = await asyncio.to_thread(
            terminate_tree,
            psutil.Process(record.pid),
            graceful_timeout=self.options.graceful_timeout,
            force_kill_timeout=self.options.force_kill_timeout,
        )
        self._reap()
        if record.pid in report.survivors:
            raise StopFailed(
                f"ComfyUI (pid {record.pid}) survived termination and kill",
                where=str(self.pidfile_path),
                hint="Stop it with your system's task manager",
                survivors=report.survivors,
            )
        remove_pidfile(self.pidfile_path)
        if report.survivors:
            raise StopFailed(
                "ComfyUI stopped, but some of its child processes survived: "
                + ", ".join(str(p) for p in report.survivors),
                where=str(self.pidfile_path),
                hint="Stop them with your system's task manager",
                survivors=report.survivors,
            )
        how = "gracefully" if report.graceful else "by force after the graceful timeout"
        return StopResult(
            "stopped",
            self.url,
            f"stopped ComfyUI (pid {record.pid}) {how} in {report.elapsed:.1f} s",
            pid=record.pid,
            log_path=Path(record.log_path),
            report=report,
            notes=tuple(notes),
        )

    async def restart(self) -> tuple[StopResult, StartResult]:
        stopped = await self.stop()
        started = await self.start()
        return stopped, started

    # -- status ----------------------------------------------------------------------------
    async def status(self, *, timeout: float = 3.0) -> ServerStatus:  # noqa: ASYNC109
        record, problem = load_pidfile(self.pidfile_path)
        notes: list[str] = []
        if problem is not None:
            notes.append(f"the pidfile {self.pidfile_path} is unreadable: {problem}")
        self._reap()
        pid: int | None = None
        uptime: float | None = None
        managed = False
        if record is not None:
            identity = identity_of(record)
            if identity.matches:
                pid, managed = record.pid, True
                uptime = max(0.0, time.time() - record.create_time)
            elif identity.unproven:
                notes.append(f"{identity.reason}; StoryCore does not manage that process")
            else:
                notes.append(f"stale pidfile: {identity.reason}")
        probe = await probe_system_stats(self.url, timeout=timeout)
        stats, url = probe.stats, self.url
        kind: ServerKind = "comfyui"
        if stats is None and not managed:
            desktop = await self._find_desktop()
            if desktop is not None:  # what `comfyui start` and generate-images would use
                stats, url, kind = desktop, server_url("127.0.0.1", self.desktop_port), "desktop"
                notes.append(f"nothing answers at {self.url}, so ComfyUI Desktop's port is used")
        if stats is not None and (
            stats.emulator or (managed and record is not None and record.kind == "emulator")
        ):
            kind = "emulator"
        queue = await fetch_queue_remaining(url, timeout=timeout) if stats else None
        if stats is not None:
            state = ServerState.RUNNING
            message = f"{describe_server(kind, stats.comfyui_version)} is running at {url}" + (
                f" (pid {pid}, managed by StoryCore)" if managed else " (not started by StoryCore)"
            )
        elif managed and uptime is not None and uptime < self.options.startup_timeout:
            state = ServerState.STARTING
            message = f"ComfyUI (pid {pid}) is starting; /system_stats does not answer yet"
        elif managed:
            state = ServerState.UNHEALTHY
            message = f"ComfyUI (pid {pid}) runs but does not answer /system_stats ({probe.error})"
        else:
            state = ServerState.STOPPED
            message = f"no ComfyUI answers at {self.url}" + (
                f" (nor ComfyUI Desktop at {server_url('127.0.0.1', self.desktop_port)})"
                if self.options.detect_desktop and self.options.port != self.desktop_port
                else ""
            )
        return ServerStatus(
            state=state,
            url=url,
            managed=managed,
            kind=kind if stats is not None else None,
            message=message,
            pid=pid,
            uptime_s=round(uptime, 1) if uptime is not None else None,
            comfyui_version=stats.comfyui_version if stats else None,
            devices=stats.devices if stats else (),
            vram_total=stats.vram_total if stats else None,
            vram_free=stats.vram_free if stats else None,
            queue_remaining=queue,
            log_path=self.log_path if self.log_path.exists() else None,
            pidfile=self.pidfile_path if record is not None else None,
            notes=tuple(notes),
        )

    # -- logs ------------------------------------------------------------------------------
    def tail_log(self, count: int = 50) -> list[str]:
        return tail_lines(self.log_path, count)

    def follow_log(
        self, *, poll: float = 0.25, max_seconds: float | None = None, until_stopped: bool = True
    ) -> AsyncIterator[str]:
        """Yield new log lines as they come; ends after ``max_seconds`` or when the server stops."""
        return follow_lines(
            self.log_path,
            poll=poll,
            max_seconds=max_seconds,
            keep_going=self.is_alive if until_stopped else None,
        )
