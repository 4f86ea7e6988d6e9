"""What every command shares: the console, ``--json`` output and the error-to-exit-code map.

Only the ``cli`` package prints. Everything below it returns data or raises
:class:`storycore.errors.StoryCoreError`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from storycore.errors import StoryCoreError

__all__ = ["Output", "configure_logging", "json_default", "report_error"]


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
    """Human output through rich, or one JSON document / JSON line per event with ``--json``."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=True)
        self.err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        """A line for people; suppressed in JSON mode (goes to stderr there)."""
        if self.json_mode:
            self.err_console.print(text)
        else:
            self.console.print(text)

    def warn(self, text: str) -> None:
        self.err_console.print(f"[bold yellow]warning:[/] {escape(text)}")

    def json(self, data: Mapping[str, Any] | list[Any]) -> None:
        """One JSON document on stdout (a line when streaming events)."""
        sys.stdout.write(json.dumps(data, default=json_default, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def report_error(err: StoryCoreError, json_mode: bool) -> int:
    """Print ``err`` as one paragraph (or JSON) and return its exit code."""
    if json_mode:
        sys.stdout.write(json.dumps({"ok": False, **err.to_dict()}, default=json_default) + "\n")
    else:
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        console.print(f"[bold red]error:[/] {escape(err.paragraph())}", emoji=False)
    return err.exit_code


def configure_logging(level: str) -> None:
    """Send StoryCore's log records at ``level`` and above to stderr (``log_level`` setting)."""
    import logging

    logger = logging.getLogger("storycore")
    if any(getattr(h, "_storycore", False) for h in logger.handlers):
        logger.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._storycore = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
