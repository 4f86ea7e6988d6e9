"""What every command shares: options, output streams, settings, errors and exit codes.

Only the ``cli`` package prints. Everything below it returns data or raises
:class:`storycore.errors.StoryCoreError`.

* :func:`command` registers a command with the options every command has: ``-v/--verbose``,
  ``-q/--quiet`` and, for commands that read settings, ``--config FILE``. It also gives every
  option a metavar a person understands (``--backend URL``, not ``<list[str]>``).
* :class:`Output` sends data (tables, listings, ``--json`` documents) to stdout and notices for
  people (progress, warnings, hints) to stderr, so ``storycore ... | head`` gets only data.
* :func:`cli_settings` resolves the settings with this command's ``--config`` and sets up
  logging from ``--verbose`` / ``--quiet`` / ``log_level``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from storycore._text import terminal_safe
from storycore.errors import StoryCoreError

if TYPE_CHECKING:
    from storycore.config import ResolvedSettings

__all__ = [
    "EXIT_BROKEN_PIPE",
    "CliState",
    "Output",
    "cli_settings",
    "cli_state",
    "command",
    "configure_logging",
    "json_default",
    "json_line",
    "report_error",
    "shown",
]

F = TypeVar("F", bound=Callable[..., Any])

# 128 + SIGPIPE: what a shell reports for `git log | head`.
EXIT_BROKEN_PIPE = 141
_PIPE_WIDTH = 4096


class _Console(Console):
    """rich's console for every line StoryCore prints.

    Text from servers and projects cannot act on the terminal: every string printed (tables
    included) passes :func:`~storycore._text.terminal_safe` before rich renders it, so an
    escape sequence, a carriage return or a direction override shows as ``\\x1b``-style text;
    emoji codes (``:warning:``) stay text. Rich markup is ours: callers put server and project
    text inside it with :func:`shown`. Known credentials are masked (:mod:`storycore._redact`).
    A closed stdout ends with exit 141 (like
    ``git log | head``).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        from storycore._redact import redact

        # A credential a server echoed back never reaches the screen, whatever printed it.
        return super().render_str(terminal_safe(redact(text)), **kwargs)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE)


@dataclass(frozen=True)
class CliState:
    """The options every command takes, for the command that is running."""

    verbose: bool = False
    quiet: bool = False
    config: Path | None = None


_STATE: contextvars.ContextVar[CliState] = contextvars.ContextVar("storycore_cli_state")
_NO_OPTIONS = CliState()


def cli_state() -> CliState:
    """The common options of the running command."""
    return _STATE.get(_NO_OPTIONS)


# Metavars by option name: what a person types there. Anything else: the name in capitals.
_METAVARS = {
    "project": "DIR",
    "path": "DIR",
    "output_dir": "DIR",
    "install_path": "DIR",
    "comfyui_dir": "DIR",
    "config": "FILE",
    "backend": "URL",
    "url": "URL",
    "shots": "ID",
    "host": "HOST",
    "port": "PORT",
    "timeout": "SECONDS",
    "max_seconds": "SECONDS",
    "step_seconds": "SECONDS",
    "lines": "N",
    "last": "N",
    "keep_newest": "N",
    "fallback": "mock|fail",
}

_COMMON_PARAMETERS = (
    inspect.Parameter(
        "verbose",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--verbose", "-v", help="Say more: debug log lines on stderr."),
        annotation=bool,
    ),
    inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(
            False, "--quiet", "-q", help="Say less: only warnings and errors on stderr."
        ),
        annotation=bool,
    ),
)

_CONFIG_PARAMETER = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        None,
        "--config",
        metavar="FILE",
        help="Read this settings file instead of the user config file.",
    ),
    annotation=Path | None,
)


def _name_metavars(parameters: list[inspect.Parameter]) -> None:
    for parameter in parameters:
        info = parameter.default
        if not isinstance(info, typer.models.ParameterInfo) or info.metavar:
            continue
        if parameter.annotation is bool:
            continue
        info.metavar = _METAVARS.get(parameter.name, parameter.name.upper())
        if isinstance(info, typer.models.ArgumentInfo):
            # Typer lists arguments with a Python type ("NAME <str>"): the usage line shows the
            # metavar and the command's help says what it is.
            info.hidden = True


def command(group: typer.Typer, name: str, *, reads_settings: bool = True) -> Callable[[F], F]:
    """Register ``func`` as command ``name`` of ``group`` with the common options.

    The wrapped function keeps its own parameters; ``--verbose``, ``--quiet`` and ``--config``
    are taken off and made available through :func:`cli_state` while it runs. A function that
    declares ``config`` itself receives it too.
    """

    def decorate(func: F) -> F:
        hints = typing.get_type_hints(func)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(func).parameters.values()
        ]
        passes_config = any(p.name == "config" for p in own)
        extra = list(_COMMON_PARAMETERS)
        if reads_settings and not passes_config:
            extra.append(_CONFIG_PARAMETER)
        parameters = [*own, *extra]
        _name_metavars(parameters)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = CliState(
                verbose=bool(kwargs.pop("verbose", False)),
                quiet=bool(kwargs.pop("quiet", False)),
                config=kwargs["config"] if passes_config else kwargs.pop("config", None),
            )
            token = _STATE.set(state)
            try:
                configure_logging("debug" if state.verbose else "error" if state.quiet else None)
                return func(*args, **kwargs)
            finally:
                _STATE.reset(token)

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        group.command(name)(wrapper)
        return func

    return decorate


def shown(value: object) -> str:
    """Text from a server or a project, ready to sit inside our rich markup: its control and
    direction characters made visible, its brackets shown as brackets (``[red]`` stays text)."""
    return escape(terminal_safe(str(value)))


# Inside a JSON document these can only stand in strings, where ``\uXXXX`` means the same
# character: C1 controls (``\x9b`` is a CSI to many terminals), direction and zero-width marks,
# lone surrogates (which cannot even be encoded). json.dumps escapes the C0 controls itself.
_JSON_UNSAFE = re.compile(
    "[\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def json_line(data: Any) -> str:
    """``data`` as one line of JSON that is safe to show in a terminal and reads back equal."""
    text = json.dumps(data, default=json_default, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_default(value: Any) -> Any:
    """Serialise the odd types our data carries (paths, sets, pydantic models, dataclasses)."""
    import dataclasses
    from pathlib import PurePath

    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


class Output:
    """Data on stdout (rich text, or JSON with ``--json``); notices for people on stderr.

    ``console`` is stdout (tables, listings: what a script or ``| head`` reads); ``err_console``
    is stderr. :meth:`info` is a notice, dropped with ``--quiet``; :meth:`warn` always shows.
    """

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.quiet = cli_state().quiet
        self.console = _Console(highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            # Piped or redirected: no terminal width to fit, so tables never cut a value short.
            self.console.width = _PIPE_WIDTH
        self.err_console = _Console(stderr=True, highlight=False, soft_wrap=True)

    def data(self, text: str) -> None:
        """A line of the command's result (stdout); nothing in JSON mode, where
        :meth:`json` carries the result."""
        if not self.json_mode:
            self.console.print(text)

    def info(self, text: str) -> None:
        """A notice for people (stderr); dropped with ``--quiet``."""
        if not self.quiet:
            self.err_console.print(text)

    def warn(self, text: str) -> None:
        self.err_console.print(f"[bold yellow]warning:[/] {shown(text)}")

    def json(self, data: Mapping[str, Any] | list[Any]) -> None:
        """One JSON document on stdout (a line when streaming events); known credentials
        masked (``***`` keeps the document valid JSON)."""
        from storycore._redact import redact

        sys.stdout.write(redact(json_line(data)) + "\n")
        sys.stdout.flush()


def cli_settings(
    project_dir: Path | None = None, cli: Mapping[str, Any] | None = None
) -> ResolvedSettings:
    """The settings for this command (its ``--config``, the project's ``storycore.toml``, the
    environment, ``cli`` flags); warnings about them go to stderr; logging follows
    ``log_level`` unless ``--verbose`` or ``--quiet`` said otherwise."""
    from storycore.config import resolve_settings

    state = cli_state()
    resolved = resolve_settings(project_dir=project_dir, cli=cli, user_config=state.config)
    err = _Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in resolved.warnings:
        err.print(f"[bold yellow]warning:[/] {shown(warning)}")
    if not state.verbose and not state.quiet:
        configure_logging(resolved.settings.log_level)
    return resolved


def report_error(err: StoryCoreError, json_mode: bool) -> int:
    """Print ``err`` as one paragraph (or JSON) and return its exit code."""
    if json_mode:
        sys.stdout.write(json.dumps({"ok": False, **err.to_dict()}, default=json_default) + "\n")
    else:
        console = _Console(stderr=True, highlight=False, soft_wrap=True)
        console.print(f"[bold red]error:[/] {shown(err.paragraph())}")
    return err.exit_code


class _SafeFormatter(logging.Formatter):
    """Log lines carry server text (error messages, URLs): shown inert, like every print, and
    with every known credential masked (a server may echo one back)."""

    def format(self, record: logging.LogRecord) -> str:
        from storycore._redact import redact

        return terminal_safe(redact(super().format(record)))


def configure_logging(level: str | None) -> None:
    """Send StoryCore's log records at ``level`` and above to stderr; ``None`` keeps warnings
    (until the settings' ``log_level`` is known)."""
    logger = logging.getLogger("storycore")
    chosen = (level or "warning").upper()
    if any(getattr(h, "_storycore", False) for h in logger.handlers):
        logger.setLevel(chosen)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    handler._storycore = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(chosen)
