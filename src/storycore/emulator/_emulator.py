"""The public face: :class:`EmulatorOptions`, :class:`Emulator` (in-process),
:func:`run_emulator` (foreground process) and :func:`emulator_folders` (the folders of an
emulator run by hand: a temporary folder, removed on exit, for those not given)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from aiohttp import web

from storycore.errors import PortInUse

from ._executor import Executor
from ._faults import FaultController
from ._folders import model_files
from ._nodedefs import DEFAULT_MODELS, NodeDefs
from ._server import ServerContext, build_app, list_input_files
from ._ws import SocketHub

__all__ = [
    "Emulator",
    "EmulatorOptions",
    "describe_folders",
    "emulator_folders",
    "run_emulator",
]

_log = logging.getLogger("storycore.emulator")

PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
# Which ComfyUI generation the emulator plays: "0.3.64" is exactly the recordings (October 2025);
# "current" adds what today's ComfyUI source does (see _profiles.py for each difference).
PROFILES = ("0.3.64", "current")


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulator behaves. Every field has a sensible default for tests.

    ``models`` maps a model folder (``checkpoints``, ``loras``, ``vae``, ``controlnet``,
    ``clip_vision``, ``ipadapter``, ...) to the file names the server pretends to have; ``None``
    uses :data:`DEFAULT_MODELS`. ``models_dir`` (ComfyUI's ``models/``) makes the lists those of
    its ``<folder>/`` files, read on every request; a folder that does not exist yet is made with
    placeholder files of the ``models`` (or default) names. An emulator that makes its own
    scratch folders, with no ``models``, gets such a folder there. ``node_packs`` adds the
    recorded custom node classes (``"ipadapter_plus"``, ``"controlnet_aux"``).
    ``preview_method`` other than ``"none"`` makes samplers send binary preview frames.
    ``profile`` picks the ComfyUI generation (:data:`PROFILES`); library use defaults to the
    recorded ``"0.3.64"``, the command line to ``"current"``.
    """

    output_dir: Path | None = None
    input_dir: Path | None = None
    temp_dir: Path | None = None
    step_seconds: float = 0.0
    node_seconds: float = 0.0
    startup_delay: float = 0.0
    models: Mapping[str, Sequence[str]] | None = None
    models_dir: Path | None = None
    node_packs: Sequence[str] = ()
    preview_method: str = "none"
    max_history: int = 10000
    mark_placeholders: bool = False
    profile: str = "0.3.64"


class Emulator:
    """A ComfyUI stand-in served over loopback; an async context manager.

    ``url``/``port`` are known once started. ``executed_prompt_ids`` lists every prompt id the
    worker has run, in order. ``faults`` injects failures (see :class:`FaultController`).
    """

    def __init__(
        self,
        options: EmulatorOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        _allow_crash: bool = False,
    ) -> None:
        self.options = options or EmulatorOptions()
        if self.options.preview_method not in PREVIEW_METHODS:
            raise ValueError(
                f"preview_method must be one of {', '.join(PREVIEW_METHODS)}, "
                f"not {self.options.preview_method!r}"
            )
        if self.options.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        self.host = host
        self.port = port
        self._allow_crash = _allow_crash
        self._owned_tmp: Path | None = None
        self._runner: web.AppRunner | None = None
        self.executed_prompt_ids: list[str] = []
        opts = self.options
        if opts.output_dir is None or opts.input_dir is None or opts.temp_dir is None:
            self._owned_tmp = Path(tempfile.mkdtemp(prefix="storycore-comfyui-emulator-"))
        base = self._owned_tmp or Path(".")
        self.output_dir = Path(opts.output_dir or base / "output").absolute()
        self.input_dir = Path(opts.input_dir or base / "input").absolute()
        self.temp_dir = Path(opts.temp_dir or base / "temp").absolute()
        # Model lists come from a models folder (ComfyUI's models/<folder>/) when there is one:
        # the one given, or a new one in the emulator's own scratch folder (see _folders.py).
        models_dir = opts.models_dir
        if models_dir is None and self._owned_tmp is not None and opts.models is None:
            models_dir = self._owned_tmp / "models"
        self.models_dir = Path(models_dir).absolute() if models_dir is not None else None
        files = model_files(opts.models, self.models_dir, DEFAULT_MODELS)
        self.defs = NodeDefs(files, opts.node_packs, lambda: list_input_files(self.input_dir))
        self._build()
        self.faults = FaultController(self.hub, self.executor, allow_crash=self._allow_crash)

    def _build(self) -> None:
        self.hub = SocketHub(lambda: self.executor.queue_info())
        self.executor = Executor(
            self.defs,
            self.hub,
            output_dir=self.output_dir,
            input_dir=self.input_dir,
            temp_dir=self.temp_dir,
            step_seconds=self.options.step_seconds,
            node_seconds=self.options.node_seconds,
            preview=self.options.preview_method != "none",
            max_history=self.options.max_history,
            on_prompt_start=self._on_prompt_start,
            on_node_start=self._on_node_start,
            profile=self.options.profile,
        )
        if hasattr(self, "faults"):
            self.faults._rebind(self.hub, self.executor)
        else:
            self.faults = FaultController(self.hub, self.executor, allow_crash=self._allow_crash)

    def _on_prompt_start(self, prompt_id: str) -> None:
        self.executed_prompt_ids.append(prompt_id)
        self.faults.on_prompt_start(prompt_id)

    def _on_node_start(self, prompt_id: str, node_id: str, class_type: str) -> None:
        self.faults.on_node_start(prompt_id, node_id, class_type)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self) -> None:
        """Wait ``startup_delay``, then listen (port 0 picks a free port)."""
        for d in (self.output_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.options.startup_delay > 0:
            await asyncio.sleep(self.options.startup_delay)
        app = build_app(
            ServerContext(
                defs=self.defs,
                hub=self.hub,
                executor=self.executor,
                faults=self.faults,
                output_dir=self.output_dir,
                input_dir=self.input_dir,
                temp_dir=self.temp_dir,
                mark_placeholders=self.options.mark_placeholders,
                profile=self.options.profile,
            )
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(
                    f"cannot listen on port {self.port}: {exc.strerror or exc}",
                    where=f"{self.host}:{self.port}",
                    hint="Stop whatever holds the port or choose another one (--port)",
                ) from exc
            raise
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self.executor.start()

    async def stop(self) -> None:
        """Stop listening, close sockets and the worker. Idempotent."""
        await self.executor.stop()
        await self.hub.close_all()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), timeout=5.0)
            self._runner = None

    async def restart(self) -> None:
        """Same port; queue, history, cache and sockets are gone, like a restarted ComfyUI."""
        await self.stop()
        self._build()
        self.faults._rebind(self.hub, self.executor)
        await self.start()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        await self.remove_owned_folders()

    async def remove_owned_folders(self) -> None:
        """Delete the temporary folders the emulator made for itself (no-op when given folders)."""
        if self._owned_tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._owned_tmp, True)
            self._owned_tmp = None


@contextlib.contextmanager
def emulator_folders(options: EmulatorOptions) -> Iterator[tuple[EmulatorOptions, Path | None]]:
    """``options`` with every folder set, and the temporary folder made for it (or ``None``).

    The folders ``options`` names are kept; the others (``output``, ``input``, ``temp``) go in a
    new temporary folder that is removed, with everything in it, when the block ends (a normal
    stop, Ctrl-C, SIGTERM or an error), so an emulator run by hand leaves nothing in the current
    folder.
    """
    if options.output_dir and options.input_dir and options.temp_dir:
        yield options, None
        return
    with tempfile.TemporaryDirectory(
        prefix="storycore-emulator-", ignore_cleanup_errors=True
    ) as name:
        scratch = Path(name)
        yield (
            dataclasses.replace(
                options,
                output_dir=options.output_dir or scratch / "output",
                input_dir=options.input_dir or scratch / "input",
                temp_dir=options.temp_dir or scratch / "temp",
                models_dir=options.models_dir
                or (scratch / "models" if options.models is None else None),
            ),
            scratch,
        )


def describe_folders(
    options: EmulatorOptions, scratch: Path | None, keep_flag: str = "--output-directory"
) -> str:
    """Where the images go, in one line for the person who started the emulator."""
    output = Path(options.output_dir or "output").absolute()
    if scratch is None:
        return f"Images go to {output}"
    if scratch in output.parents:
        return (
            f"Images go to {output}, in a temporary folder removed on exit "
            f"({keep_flag} DIR keeps them)"
        )
    return f"Images go to {output}; uploads and temporary files to {scratch} (removed on exit)"


def run_emulator(
    options: EmulatorOptions,
    host: str = "127.0.0.1",
    port: int = 8188,
    *,
    banner: Sequence[str] = (),
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (blocking); ``banner`` lines are logged
    once it listens."""
    asyncio.run(_serve(options, host, port, crash_after=None, banner=banner))


async def _serve(
    options: EmulatorOptions,
    host: str,
    port: int,
    crash_after: int | None,
    log_stream: TextIO | None = None,
    banner: Sequence[str] = (),
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    handler = logging.StreamHandler(log_stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    emulator = Emulator(options, host=host, port=port, _allow_crash=True)
    try:
        _log.info("StoryCore ComfyUI emulator (protocol of ComfyUI 0.3.64)")
        await emulator.start()
        if crash_after is not None:
            emulator.faults.crash_after_prompts(crash_after)
        _log.info("Starting server\n")
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        _log.info("To see the GUI go to: http://%s:%d", shown, emulator.port)
        for line in banner:
            _log.info("%s", line)
        handler.flush()
        await stop.wait()
    finally:
        await emulator.stop()
        await emulator.remove_owned_folders()
        _log.removeHandler(handler)
