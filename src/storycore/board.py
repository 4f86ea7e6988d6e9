"""Moved: the static board lives in :mod:`storycore.review` now (``storycore.review._board``).

This thin re-export keeps ``from storycore.board import ...`` working until the last importers
(the engine's) follow; import from :mod:`storycore.review` in new code.
"""

from __future__ import annotations

from storycore.review._board import (
    BOARD_DIR,
    SHEET_PAGE,
    BoardFiles,
    BoardPanel,
    board_panels,
    cache_thumbnail,
    thumb_cache,
    write_board,
)

__all__ = [
    "BOARD_DIR",
    "SHEET_PAGE",
    "BoardFiles",
    "BoardPanel",
    "board_panels",
    "cache_thumbnail",
    "thumb_cache",
    "write_board",
]
