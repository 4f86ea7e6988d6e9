"""Words for people, shared by every layer: ``plural(2, "file")`` -> ``"2 files"``; text from
servers and projects made safe to show (:func:`terminal_safe`); node ids in the order people
expect (:func:`node_sort_key`)."""

from __future__ import annotations

import re

__all__ = ["node_sort_key", "plural", "terminal_safe", "without_surrogates"]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun in the form it takes (``1 file``, ``0 files``, ``2 entries``).

    ``plural_form`` is for nouns that do not take an ``s`` (``"entry", "entries"``); the count
    is written with thousands separators (``1,200 files``).
    """
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"


# C0 controls but newline and tab, DEL, C1 controls, and the Unicode marks that reorder or hide
# text on screen (bidirectional overrides and isolates, zero-width and BOM characters).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
    "|[\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # a lone surrogate: cannot be encoded, shown as the replacement mark
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` (from a server or a project) made harmless for a terminal or a log line.

    Escape sequences and other control characters are shown as ``\\x1b``-style text instead of
    acting (a server cannot clear the screen, move the cursor or print a fake "done"); text
    direction overrides and zero-width characters are shown the same way; a lone surrogate
    becomes U+FFFD. Newlines and tabs stay unless ``keep_newlines=False``.
    """
    if not keep_newlines:
        text = text.replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_visible, text)


def node_sort_key(node_id: str) -> tuple[int, int, str, str]:
    """Sort node ids as people expect (``"2"`` before ``"10"``, then the others by text).

    Any id a server or a workflow file holds works: ``"\u00b2"`` is a digit to
    :meth:`str.isdigit` but not to :func:`int`, and an id of 5000 digits is past :func:`int`'s
    limit, so ids are compared by their ASCII digits, never converted.
    """
    if node_id.isascii() and node_id.isdigit():
        digits = node_id.lstrip("0") or "0"
        return (0, len(digits), digits, node_id)
    return (1, 0, node_id, node_id)


_SURROGATES = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (a ``"\\ud800"`` escape in received JSON, which no UTF-8
    file, PNG chunk or server can hold) replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)
