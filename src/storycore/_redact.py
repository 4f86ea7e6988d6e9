"""Known secrets are never shown or stored: a process-wide list of credential values to hide.

A server may echo what it was sent (an ``X-Api-Key`` quoted in a 401 body, a token in an
error text). Every credential StoryCore is given is remembered here when a server address is
built (:func:`remember_secret`); every text from a server or about one passes through
:func:`redact` before it reaches the terminal, ``project.json``, the journal or diagnostics.
:class:`storycore.errors.StoryCoreError` redacts its own message, so every error is covered.

The list is process-wide on purpose: credentials come from the user's settings, and the places
that show or store text (errors, the journal, diagnostics) do not hold the settings. Values
shorter than :data:`MIN_SECRET_LENGTH` are not hidden (``"a"`` would blank every ``a``).
"""

from __future__ import annotations

import base64
import threading
import urllib.parse

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "forget_all_secrets",
    "redact",
    "remember_basic_auth",
    "remember_secret",
]

MASK = "***"
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def remember_secret(*values: str | None) -> None:
    """Hide ``values`` (and their URL-quoted forms) in every later :func:`redact`."""
    global _secrets
    found: set[str] = set()
    for value in values:
        if not value or len(value) < MIN_SECRET_LENGTH:
            continue
        found.add(value)
        found.add(urllib.parse.quote(value, safe=""))
        found.add(urllib.parse.quote_plus(value))
    if not found:
        return
    with _lock:
        merged = set(_secrets) | found
        # Longest first, so a secret that contains another is hidden whole.
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def remember_basic_auth(username: str, password: str) -> None:
    """Hide a password and the ``Authorization: Basic`` value made from it."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    remember_secret(password, token)


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***``."""
    secrets = _secrets
    if not secrets or not text:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def forget_all_secrets() -> None:
    """Tests only: start from an empty list."""
    global _secrets
    with _lock:
        _secrets = ()
