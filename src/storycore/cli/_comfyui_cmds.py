"""``storycore comfyui``: start, stop, restart, status and logs of the local ComfyUI; the emulator.

The settings (``comfyui.*`` in the config files and ``STORYCORE_COMFYUI__*``) say where ComfyUI
is installed and how to run it; ``--host``, ``--port`` and ``--install-path`` override them for
one command.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from storycore.cli._common import Output, cli_settings, command, shown
from storycore.cli._doctor_cmds import capability_lines
from storycore.errors import ConfigError

if TYPE_CHECKING:
    from storycore.comfyui.manager import ComfyUIManager, ManagerOptions

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
HOST_OPTION = typer.Option(None, "--host", help="Listen address (default: comfyui.host).")
PORT_OPTION = typer.Option(None, "--port", help="Port (default: comfyui.port).")
INSTALL_OPTION = typer.Option(
    None, "--install-path", help="ComfyUI folder (default: comfyui.install_path)."
)
PROJECT_OPTION = typer.Option(
    None, "--project", "-p", help="A project folder whose storycore.toml applies."
)
OUTPUT_DIR_OPTION = typer.Option(
    None,
    "--output-dir",
    help="Where emulated images are written (default: a temporary folder removed on exit).",
)
MODELS_DIR_OPTION = typer.Option(
    None,
    "--models-dir",
    help="Model lists from DIR/<folder>/ (checkpoints/, loras/, ...), like ComfyUI's models/; "
    "a missing DIR is made with placeholder files (default: a temporary one).",
)
MOCK_OPTION = typer.Option(
    False, "--mock", help="Run StoryCore's ComfyUI emulator instead of a real ComfyUI."
)


def _options(
    *,
    project: Path | None,
    host: str | None,
    port: int | None,
    install_path: Path | None,
) -> ManagerOptions:
    """Map the resolved settings (and this command's overrides) onto the manager's options."""
    from storycore.comfyui.manager import desktop_port_allowed, options_from_settings

    resolved = cli_settings(project)
    # ComfyUI Desktop's port is tried only when the user chose no port, host or install.
    desktop = host is None and port is None and install_path is None
    return options_from_settings(
        resolved.settings,
        host=host,
        port=port,
        install_path=install_path,
        detect_desktop=desktop and desktop_port_allowed(resolved),
    )


def _manager(options: ManagerOptions, mock: bool) -> ComfyUIManager:
    from storycore.comfyui.install import emulator_install
    from storycore.comfyui.manager import ComfyUIManager

    if not mock:
        return ComfyUIManager(options)
    output = options.state_folder / "mock-output"
    mock_options = dataclasses.replace(
        options,
        detect_desktop=False,  # asked for the emulator: never adopt ComfyUI Desktop instead
        extra_args=(
            *options.extra_args,
            "--output-directory",
            str(output),
            "--mark-placeholders",
        ),
    )
    return ComfyUIManager(mock_options, install=emulator_install(cwd=options.state_folder))


def _data(value: Any) -> Any:
    """A JSON-friendly copy of a result dataclass."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _say_started(out: Output, result: Any, where: str = "") -> None:
    for note in result.notes:
        out.warn(note)
    out.info(shown(result.message) + ".")
    if result.log_path is not None:
        out.info(f"Log: {shown(result.log_path)}")
    if result.action == "started":
        out.info(
            f"Ready in {result.elapsed:.1f} s. Stop it with 'storycore comfyui stop{shown(where)}'."
        )


def _where(host: str | None, port: int | None) -> str:
    """The ``--host``/``--port`` flags to repeat in later commands."""
    return (f" --host {host}" if host else "") + (f" --port {port}" if port else "")


def _say_stopped(out: Output, result: Any) -> None:
    for note in result.notes:
        out.warn(note)
    out.info(shown(result.message) + ".")
    if result.log_path is not None:
        out.info(f"Log: {shown(result.log_path)}")


def _log_line(line: str) -> str:
    """A log line as a terminal would have left it: a progress bar that redraws itself with
    carriage returns shows its last state (the printing makes any other control visible)."""
    parts = [part for part in line.split("\r") if part.strip()]
    return parts[-1] if parts else ""


def _follow(manager: ComfyUIManager, out: Output, max_seconds: float | None) -> None:
    async def run() -> None:
        async for line in manager.follow_log(max_seconds=max_seconds):
            if out.json_mode:
                out.json({"event": "log", "line": line})
            else:
                out.console.print(_log_line(line), markup=False, highlight=False)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def register(app: typer.Typer) -> None:
    """Add the ``comfyui`` group to ``app``."""
    group = typer.Typer(help="Run and watch the local ComfyUI server.", no_args_is_help=True)
    app.add_typer(group, name="comfyui")

    @command(group, "start")
    def start(
        foreground: bool = typer.Option(
            False, "--foreground", help="Stay attached: stream the log; Ctrl-C stops the server."
        ),
        mock: bool = MOCK_OPTION,
        host: str | None = HOST_OPTION,
        port: int | None = PORT_OPTION,
        install_path: Path | None = INSTALL_OPTION,
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Start ComfyUI (or adopt one already serving the port) and wait until it answers."""
        out = Output(json_out)
        opts = _options(project=project, host=host, port=port, install_path=install_path)
        manager = _manager(opts, mock)
        result = asyncio.run(manager.start())
        if json_out:
            out.json({"ok": True, **_data(result)})
        else:
            _say_started(out, result, _where(host, port))
        if not foreground or not result.managed:
            manager.detach()
            return
        out.info("Streaming the log; press Ctrl-C to stop the server.")
        try:
            _follow(manager, out, None)
        finally:
            stopped = asyncio.run(manager.stop())
            if json_out:
                out.json({"ok": True, "event": "stopped", **_data(stopped)})
            else:
                _say_stopped(out, stopped)

    @command(group, "stop")
    def stop(
        host: str | None = HOST_OPTION,
        port: int | None = PORT_OPTION,
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Stop the ComfyUI that StoryCore started (and its child processes)."""
        from storycore.comfyui.manager import ComfyUIManager

        out = Output(json_out)
        opts = _options(project=project, host=host, port=port, install_path=None)
        result = asyncio.run(ComfyUIManager(opts).stop())
        if json_out:
            out.json({"ok": True, **_data(result)})
        else:
            _say_stopped(out, result)

    @command(group, "restart")
    def restart(
        mock: bool = MOCK_OPTION,
        host: str | None = HOST_OPTION,
        port: int | None = PORT_OPTION,
        install_path: Path | None = INSTALL_OPTION,
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Stop the managed ComfyUI, then start it again (the emulator stays the emulator)."""
        from storycore.comfyui.process import load_pidfile

        out = Output(json_out)
        opts = _options(project=project, host=host, port=port, install_path=install_path)
        record, _problem = load_pidfile(_manager(opts, False).pidfile_path)
        manager = _manager(opts, mock or (record is not None and record.kind == "emulator"))
        stopped, started = asyncio.run(manager.restart())
        manager.detach()
        if json_out:
            out.json({"ok": True, "stop": _data(stopped), "start": _data(started)})
            return
        _say_stopped(out, stopped)
        _say_started(out, started, _where(host, port))

    @command(group, "status")
    def status(
        host: str | None = HOST_OPTION,
        port: int | None = PORT_OPTION,
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Say whether ComfyUI runs: pid, uptime, URL, version, devices, VRAM, queue, log.
        Exits 0 when it runs, 3 when it does not, 4 when a process runs that does not answer
        (as an LSB init script's status does)."""
        from storycore.comfyui.manager import ComfyUIManager

        out = Output(json_out)
        opts = _options(project=project, host=host, port=port, install_path=None)
        info = asyncio.run(ComfyUIManager(opts).status())
        caps = None
        if info.exit_code == 0:  # it answers: what it can do (version, jobs API, flags, GPUs)
            from storycore.doctor import probe_capabilities

            settings = cli_settings(project).settings
            timeout = settings.comfyui.health_check_timeout
            caps = asyncio.run(probe_capabilities(info.url, settings, timeout))
        if json_out:
            data = {"ok": info.exit_code == 0, **_data(info), "capabilities": caps}
            out.json({**data, "exit_code": info.exit_code})
            raise typer.Exit(info.exit_code)
        out.data(f"{info.state.value}: {shown(info.message)}.")
        rows: list[tuple[str, str]] = [("URL", info.url)]
        if info.pid is not None:
            rows.append(("pid", str(info.pid)))
        if info.uptime_s is not None:
            rows.append(("uptime", f"{info.uptime_s:.0f} s"))
        if info.comfyui_version:
            rows.append(("version", info.comfyui_version))
        for device in info.devices:
            rows.append(
                (
                    "device",
                    f"{device.name} ({device.type}): {_gib(device.vram_free)} free of "
                    f"{_gib(device.vram_total)}",
                )
            )
        if info.queue_remaining is not None:
            rows.append(("queue", str(info.queue_remaining)))
        if info.log_path is not None:
            rows.append(("log", str(info.log_path)))
        for name, value in rows:
            out.data(f"  {name:<8} {shown(value)}")
        for line in capability_lines(caps):
            out.data(f"  {shown(line)}")
        for note in info.notes:
            out.warn(note)
        raise typer.Exit(info.exit_code)

    @command(group, "logs")
    def logs(
        lines: int = typer.Option(50, "-n", "--lines", min=0, help="How many lines to show."),
        follow: bool = typer.Option(
            False, "--follow", "-f", help="Keep printing new lines until the server stops."
        ),
        max_seconds: float | None = typer.Option(
            None, "--max-seconds", min=0, help="Stop following after this many seconds."
        ),
        host: str | None = HOST_OPTION,
        port: int | None = PORT_OPTION,
        project: Path | None = PROJECT_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Show the end of the ComfyUI log (and follow it with --follow; Ctrl-C ends)."""
        from storycore.comfyui.manager import ComfyUIManager

        out = Output(json_out)
        opts = _options(project=project, host=host, port=port, install_path=None)
        manager = ComfyUIManager(opts)
        tail = manager.tail_log(lines)
        if json_out:
            out.json({"ok": True, "log_path": manager.log_path, "lines": tail})
        else:
            if not manager.log_path.exists():
                out.info(f"No log yet at {shown(manager.log_path)}.")
            for line in tail:
                out.console.print(_log_line(line), markup=False, highlight=False)
        if follow:
            _follow(manager, out, max_seconds)

    @command(group, "emulate", reads_settings=False)
    def emulate(
        host: str = typer.Option("127.0.0.1", "--host", help="Listen address."),
        port: int = typer.Option(8188, "--port", help="Port."),
        output_dir: Path | None = OUTPUT_DIR_OPTION,
        step_seconds: float = typer.Option(
            0.0, "--step-seconds", min=0, help="Emulated time per sampler step."
        ),
        node_seconds: float = typer.Option(
            0.0, "--node-seconds", min=0, help="Emulated time per node that is not a sampler."
        ),
        profile: str = typer.Option(
            "current",
            "--profile",
            help="Which ComfyUI to play: 0.3.64 (exactly the recordings) or current.",
        ),
        models_dir: Path | None = MODELS_DIR_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Run StoryCore's ComfyUI emulator in the foreground (Ctrl-C stops it). Images go to
        --output-dir, else to a temporary folder removed on exit, as do its uploads."""
        from storycore.emulator import (
            PROFILES,
            EmulatorOptions,
            describe_folders,
            emulator_folders,
            run_emulator,
        )

        out = Output(json_out)
        if profile not in PROFILES:
            raise ConfigError(
                f"--profile {profile!r} is not a ComfyUI generation the emulator plays; "
                f"use one of: {', '.join(PROFILES)}."
            )
        began = time.monotonic()
        url = f"http://{host}:{port}"
        asked = EmulatorOptions(
            output_dir=output_dir,
            step_seconds=step_seconds,
            node_seconds=node_seconds,
            mark_placeholders=True,
            profile=profile,
            models_dir=models_dir,
        )
        with emulator_folders(asked) as (options, scratch):
            where = describe_folders(options, scratch, keep_flag="--output-dir")
            if json_out:
                out.json(
                    {
                        "ok": True,
                        "event": "serving",
                        "url": url,
                        "output_dir": str(Path(options.output_dir or ".").absolute()),
                        "temporary_dir": str(scratch) if scratch is not None else None,
                    }
                )
            else:
                out.info(
                    f"Emulating ComfyUI at {shown(url)}; press Ctrl-C to stop. {shown(where)}."
                )
            with contextlib.suppress(KeyboardInterrupt):
                run_emulator(options, host, port)
        elapsed = time.monotonic() - began
        if json_out:
            out.json({"ok": True, "event": "stopped", "url": url, "seconds": round(elapsed, 1)})
        else:
            out.info(f"Emulator stopped after {elapsed:.0f} s.")


def _gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB"
