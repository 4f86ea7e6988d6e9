"""Words for people, shared by every layer: ``plural(2, "file")`` -> ``"2 files"``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun in the form it takes (``1 file``, ``0 files``, ``2 entries``).

    ``plural_form`` is for nouns that do not take an ``s`` (``"entry", "entries"``); the count
    is written with thousands separators (``1,200 files``).
    """
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"
