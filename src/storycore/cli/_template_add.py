"""``storycore template add`` (being written; see issue 16)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(group: typer.Typer) -> None:
    """Add ``add`` to the ``template`` group."""
