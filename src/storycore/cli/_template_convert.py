"""``storycore template convert`` (being written; see issue 16)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(group: typer.Typer) -> None:
    """Add ``convert`` to the ``template`` group."""
