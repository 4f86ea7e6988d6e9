"""Helpers for tests that walk the ``storycore`` command tree."""

from __future__ import annotations

from typing import Any

import typer

from storycore.cli.app import build_app


def leaf_commands() -> list[tuple[str, Any]]:
    """Every leaf command of the app as (``"group name"``, click command)."""
    root = typer.main.get_command(build_app())
    found: list[tuple[str, Any]] = []

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(cmd, "commands"):
                walk(cmd, path)
            else:
                found.append((path, cmd))

    walk(root, "")
    return found
