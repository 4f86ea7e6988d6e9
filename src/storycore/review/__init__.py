"""The review loop: the board as data (cards), the actions a person takes on it (pick, approve,
reject, comment, edit, render), and the live review page that serves both.

Nothing here runs at import time; the web app is built by :func:`build_app` when
``storycore review`` starts it.
"""

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
from storycore.review._cards import REVIEW_KEY, Card, Take, board_cards, card_digest, shot_review
from storycore.review._thumbcache import ThumbCache

__all__ = [
    "BOARD_DIR",
    "REVIEW_KEY",
    "SHEET_PAGE",
    "BoardFiles",
    "BoardPanel",
    "Card",
    "Take",
    "ThumbCache",
    "board_cards",
    "board_panels",
    "cache_thumbnail",
    "card_digest",
    "shot_review",
    "thumb_cache",
    "write_board",
]
