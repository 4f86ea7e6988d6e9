"""The one place where aiohttp, OS and JSON errors become :mod:`storycore.errors` classes, and
where HTTP answers that are not ComfyUI's are put in words.

Messages speak to people: "nothing answers (connection refused)", "HTTP 404 from /system_stats:
this is not a ComfyUI server (check the URL and its path prefix)", never a library's exception
text or a server's HTML body (the body is kept on :class:`~storycore.errors.ServerResponseError`
for diagnostics). ``where`` is always the URL.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import aiohttp

from storycore._redact import redact
from storycore.errors import (
    ComfyUIError,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    StoryCoreError,
)

if TYPE_CHECKING:
    from storycore.comfyui._transport import ClientTimeouts

__all__ = [
    "connect_failure",
    "content_kind",
    "not_json_error",
    "status_error",
    "status_hint",
    "status_meaning",
    "translate_errors",
    "translate_exception",
]


@contextlib.contextmanager
def translate_errors(
    where: str, *, action: str = "talking to ComfyUI", timeouts: ClientTimeouts | None = None
) -> Iterator[None]:
    """Turn aiohttp, OS and JSON errors raised inside the block into StoryCore errors (see
    :func:`translate_exception`)."""
    try:
        yield
    except StoryCoreError:
        raise
    except Exception as exc:
        translated = translate_exception(exc, where, action=action, timeouts=timeouts)
        if translated is None:
            raise
        raise translated from None


def translate_exception(
    exc: BaseException,
    where: str,
    *,
    action: str = "talking to ComfyUI",
    timeouts: ClientTimeouts | None = None,
) -> StoryCoreError | None:
    """The StoryCore error for an aiohttp, OS or JSON error (``None`` for anything else): the
    one place where they are put in words. Messages say what happened for people ("nothing
    answers (connection refused)"), never a library's exception text; ``where`` is the URL."""
    if isinstance(exc, StoryCoreError):
        return exc
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return ServerResponseError(
            f"HTTP {exc.status} to the WebSocket handshake: {status_meaning(exc.status, '/ws')}",
            where=where,
            hint=status_hint(exc.status),
            status=exc.status,
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return ServerResponseError(
            f"HTTP {exc.status} to {action}: {status_meaning(exc.status, action)}",
            where=where,
            hint=status_hint(exc.status),
            status=exc.status,
        )
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ServerUnreachable(
            _tls_failure(exc),
            where=where,
            hint="check the server certificate; for a self-signed one set verify_tls=False",
        )
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return ServerTimeout(
            _timeout_words(exc, action, timeouts),
            where=where,
            hint="check that the server is running and not overloaded, or raise the timeouts",
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ServerResponseError(
            f"the answer to {action} was cut off or malformed",
            where=where,
            hint="retry; if it persists, check the server log",
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ServerUnreachable(
            f"the server closed the connection during {action}",
            where=where,
            hint="check that ComfyUI is still running",
        )
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return ServerUnreachable(
            connect_failure(exc),
            where=where,
            hint="check that ComfyUI runs at this address and that the port is right",
        )
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return ServerResponseError(
            f"the answer to {action} is not valid JSON: this is not a ComfyUI server",
            where=where,
            hint="check that the URL points at ComfyUI and not at another web server",
        )
    if isinstance(exc, aiohttp.ClientError):
        return ComfyUIError(
            f"the HTTP request failed during {action}",
            where=where,
            hint="check the URL and the server; --verbose logs the details",
        )
    return None


_UNREACHABLE_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)


def connect_failure(exc: BaseException) -> str:
    """Why a connection failed, in words: ``nothing answers (connection refused)``."""
    cause = getattr(exc, "os_error", None) or exc
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        host = getattr(exc, "host", None)
        named = f" {host}" if isinstance(host, str) and host else ""
        return f"the host name{named} is not known (DNS lookup failed)"
    number = getattr(cause, "errno", None)
    if number == errno.ECONNREFUSED or isinstance(cause, ConnectionRefusedError):
        return "nothing answers (connection refused)"
    if number in _UNREACHABLE_ERRNOS:
        return "the host cannot be reached (no route to it: check the address and the network)"
    if number == errno.ETIMEDOUT:
        return "the connection timed out (a firewall, or a wrong address)"
    if isinstance(cause, ConnectionResetError):
        return "the server reset the connection"
    reason = getattr(cause, "strerror", None)
    return f"cannot connect ({reason})" if isinstance(reason, str) and reason else "cannot connect"


def _timeout_words(exc: BaseException, action: str, timeouts: ClientTimeouts | None) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        within = f" within {timeouts.connect:g} s" if timeouts else ""
        return f"no connection{within} (connect timeout: a firewall, or a wrong address)"
    within = f" within {timeouts.read:g} s" if timeouts else " in time"
    return f"no answer to {action}{within} (read timeout)"


def _tls_failure(exc: BaseException) -> str:
    cert_error = getattr(exc, "certificate_error", None)
    verify = getattr(cert_error, "verify_message", None)
    if isinstance(verify, str) and verify:
        return f"the TLS certificate is not trusted ({verify})"
    return "the TLS handshake failed (is this an https:// server?)"


_CORE_ROUTES = ("/system_stats", "/object_info", "/prompt", "/queue", "/history", "/ws")


def status_meaning(status: int, route: str) -> str:
    """What an HTTP status means when ComfyUI's ``route`` answers with it, in words."""
    if status == 404:
        if any(part in route for part in _CORE_ROUTES):
            return "this is not a ComfyUI server (check the URL and its path prefix)"
        return "not found on the server"
    if status in (401, 403):
        return "refused (check the token, basic auth or headers, or the proxy in front of it)"
    if status >= 500:
        return "the server failed (see its log)"
    return "not an answer ComfyUI gives"


def status_hint(status: int) -> str:
    if status in (401, 403):
        return "the server or a proxy in front of it refused the credentials; check token/headers"
    if status == 404:
        return "check the URL and its path prefix; is this a ComfyUI server?"
    if status >= 500:
        return "the server failed; see its log"
    return "check the request and the server log"


def status_error(status: int, body: str, route: str, where: str) -> ServerResponseError:
    """An answer other than 200 from ComfyUI's ``route``. The body (an HTML error page, a
    proxy's text) is kept on the error for diagnostics, never put in the message."""
    return ServerResponseError(
        f"HTTP {status} from {route}: {status_meaning(status, route)}",
        where=where,
        hint=status_hint(status),
        status=status,
        body=redact(body[:4000])[:2000],
    )


def not_json_error(content_type: str, body: str, route: str, where: str) -> ServerResponseError:
    """A 200 from ``route`` whose body is not JSON (a web page, a proxy's login form)."""
    return ServerResponseError(
        f"{route} answered with something that is not JSON ({content_kind(content_type)}): "
        "this is not a ComfyUI server",
        where=where,
        hint="check that the URL (and its path prefix) points at ComfyUI",
        status=200,
        body=redact(body[:4000])[:2000],
    )


def content_kind(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/html":
        return "an HTML page"
    return kind if kind and kind.isprintable() and len(kind) < 60 else "an unknown body"
