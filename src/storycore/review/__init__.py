"""The review loop: the board as data (cards), the actions a person takes on it (pick, approve,
reject, comment, edit, render), and the live review page that serves both.

Nothing here runs at import time; the web app is built by :func:`build_app` when
``storycore review`` starts it.
"""

from storycore.review._actions import (
    list_takes,
    pick_take,
    reject_take,
    resolve_take,
    set_approval,
    set_comment,
)
from storycore.review._app import ReviewServer, build_app
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
from storycore.review._board_pdf import write_board_pdf
from storycore.review._cards import REVIEW_KEY, Card, Take, board_cards, card_digest, shot_review
from storycore.review._edit import EDITABLE, edit_shot, storyboard_token
from storycore.review._feed import BoardFeed, Subscription
from storycore.review._thumbcache import ThumbCache

__all__ = [
    "BOARD_DIR",
    "EDITABLE",
    "REVIEW_KEY",
    "SHEET_PAGE",
    "BoardFeed",
    "BoardFiles",
    "BoardPanel",
    "Card",
    "ReviewServer",
    "Subscription",
    "Take",
    "ThumbCache",
    "board_cards",
    "board_panels",
    "build_app",
    "cache_thumbnail",
    "card_digest",
    "edit_shot",
    "list_takes",
    "pick_take",
    "reject_take",
    "resolve_take",
    "set_approval",
    "set_comment",
    "shot_review",
    "storyboard_token",
    "thumb_cache",
    "write_board",
    "write_board_pdf",
]
