"""The review loop: the board as data (cards), the actions a person takes on it (pick, approve,
reject, comment, edit, render), and the live review page that serves both.

Nothing here runs at import time; the web app is built by :func:`build_app` when
``storycore review`` starts it.
"""

from storycore.review._cards import REVIEW_KEY, Card, Take, board_cards, card_digest, shot_review

__all__ = [
    "REVIEW_KEY",
    "Card",
    "Take",
    "board_cards",
    "card_digest",
    "shot_review",
]
