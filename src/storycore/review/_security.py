"""What keeps the review page the project owner's: where it binds, who may call it, and what
every answer says to the browser.

* Loopback by default. Any other bind needs a token (random, printed once in the page's URL):
  ``GET /?token=...`` sets an HttpOnly, SameSite=Strict cookie and sends the browser on to
  ``/``; a script may send ``Authorization: Bearer <token>`` instead. Without it: 401.
* The ``Host`` header must name this server (a loopback name, or, on another bind, this
  machine or an address, with our port): a page on ``evil.example`` whose name was re-pointed
  at 127.0.0.1 (DNS rebinding) is answered 421 and reads nothing.
* Every state-changing request (anything but GET/HEAD) carries ``X-StoryCore-CSRF`` equal to
  the token the page got in its ``<meta>`` tag (403 otherwise; a cross-site form cannot set a
  header) and a JSON body of at most :data:`MAX_BODY` bytes (413).
* Every answer, errors included, carries a strict Content-Security-Policy (no inline script,
  nothing from elsewhere), ``nosniff`` and ``no-referrer``; every error is
  ``{"error": "one paragraph"}``.

Pure policy plus two aiohttp hooks (:func:`guard` middleware, :func:`add_headers` signal).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from storycore.errors import OutsideProjectError

__all__ = [
    "CSP",
    "CSRF_HEADER",
    "MAX_BODY",
    "SECURITY_HEADERS",
    "AccessPolicy",
    "add_headers",
    "error_response",
    "guard",
    "is_loopback",
    "new_token",
    "policy_middleware",
]

_log = logging.getLogger("storycore.review")

MAX_BODY = 1024 * 1024  # a JSON action body; an edit of a whole shot is a few KiB
CSRF_HEADER = "X-StoryCore-CSRF"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_host(header: str) -> tuple[str, int | None] | None:
    """``Host`` header -> (lower-case name, port or None); None when it does not parse."""
    text = header.strip().lower()
    if not text or len(text) > 300:
        return None
    if text.startswith("["):  # [::1]:8765
        name, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        name, _, port_text = text.partition(":")
    elif ":" in text:  # a bare IPv6 address without brackets is not a valid Host
        return None
    else:
        name, port_text = text, ""
    if not port_text:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


@dataclass
class AccessPolicy:
    """Who may call the server bound at ``host``. ``port`` is set once the socket is bound
    (``--port 0``). ``token`` is required when ``host`` is not loopback; ``csrf`` is the
    page's token for state-changing requests."""

    host: str
    port: int = 0
    token: str | None = None
    csrf: str = field(default_factory=new_token)

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            self.token = new_token()

    @property
    def needs_token(self) -> bool:
        return self.token is not None

    @property
    def cookie_name(self) -> str:
        # Cookies are not kept apart by port: two review servers on one machine keep theirs.
        return f"storycore_review_{self.port}"

    def allowed_names(self) -> set[str]:
        names = set(_LOOPBACK_NAMES)
        bind = self.host.strip("[]").lower()
        if bind not in _WILDCARDS:
            names.add(bind)
        if not is_loopback(self.host):
            for name in (socket.gethostname(), socket.getfqdn()):
                if name:
                    names.add(name.lower())
        return names

    def host_ok(self, header: str | None) -> bool:
        """Does the request's ``Host`` name this server (name and port)?"""
        parsed = _split_host(header or "")
        if parsed is None:
            return False
        name, port = parsed
        if (port if port is not None else 80) != self.port:
            return False
        if name in self.allowed_names():
            return True
        # On a non-loopback bind people also type the machine's address.
        return not is_loopback(self.host) and _is_address(name)

    def token_ok(self, candidate: str | None) -> bool:
        if self.token is None:
            return True
        return candidate is not None and hmac.compare_digest(
            candidate.encode("utf-8", "replace"), self.token.encode()
        )

    def csrf_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode("utf-8", "replace"), self.csrf.encode()
        )


def error_response(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": text}`` with ``status`` (the one shape of every error)."""
    return web.json_response({"error": text}, status=status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def _check_access(request: web.Request, policy: AccessPolicy) -> web.StreamResponse | None:
    """An error answer (or the token's redirect) when the request may not go on; else None."""
    if not policy.host_ok(request.headers.get("Host")):
        return error_response(
            421,
            "this review server does not answer for the host name "
            f"{(request.headers.get('Host') or '(none)')[:100]!r}; open the address "
            "'storycore review' printed",
        )
    if policy.needs_token:
        query_token = request.query.get("token") if request.method == "GET" else None
        if request.path == "/" and query_token is not None:
            if not policy.token_ok(query_token):
                return error_response(401, "the token in the address is not this server's")
            answer = web.Response(status=303, headers={"Location": "/"})
            answer.set_cookie(
                policy.cookie_name,
                query_token,
                httponly=True,
                samesite="Strict",
                path="/",
            )
            return answer
        supplied = _bearer(request) or request.cookies.get(policy.cookie_name)
        if not policy.token_ok(supplied):
            return error_response(
                401,
                "this review server needs its token: open the address with '?token=' that "
                "'storycore review' printed, or send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="storycore-review"'},
            )
    if request.method not in _SAFE_METHODS:
        if not policy.csrf_ok(request.headers.get(CSRF_HEADER)):
            return error_response(
                403,
                f"a change needs the page's {CSRF_HEADER} header; reload the review page "
                "and try again",
            )
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return error_response(413, f"the request body is over {MAX_BODY} bytes")
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def policy_middleware(
    policy: AccessPolicy,
) -> Middleware:
    """The aiohttp middleware that applies ``policy`` and turns every error into JSON."""

    @web.middleware
    async def guard_with_policy(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await guard(request, handler, policy)

    return guard_with_policy


async def guard(request: web.Request, handler: Handler, policy: AccessPolicy) -> web.StreamResponse:
    """Check ``request`` against ``policy``, run ``handler``, and answer any error as
    ``{"error": ...}`` (aiohttp's own 404/405/413 included; no traceback ever leaves)."""
    refused = _check_access(request, policy)
    if refused is not None:
        return refused
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _http_text(exc, request.method))
    except OutsideProjectError:
        # A render or preview reached through a link that leaves the project: refused, and
        # where the link leads is not the page's business.
        return error_response(
            403, "refused: that file is reached through a link that leaves the project folder"
        )
    except Exception:
        _log.exception("review: %s %s failed", request.method, request.path)
        return error_response(500, "the review server failed on this request; see its log")


def _http_text(exc: web.HTTPException, method: str) -> str:
    text = exc.text or ""
    if exc.content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    if exc.status == 404:
        return "nothing here: the review page asks only for its own routes, asset ids and keys"
    if exc.status == 405:
        return f"this route does not take {method[:20]} requests"
    if exc.status == 413:
        return f"the request body is over {MAX_BODY} bytes"
    return text.strip() or exc.reason


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the security headers on every answer (errors, streams)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
