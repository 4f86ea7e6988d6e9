"""HTTP and WebSocket transport to one ComfyUI server.

Holds the server address (base URL with any reverse-proxy path prefix, authentication), the
timeouts and one aiohttp session. Errors are translated by :func:`translate_errors` (in
:mod:`storycore.comfyui._translate`, re-exported here), the one place where aiohttp and OS
errors become :mod:`storycore.errors` classes.

Rules kept here (a server is untrusted: everything it sends, redirects and timing included):

* Authentication (bearer token, basic auth, custom headers such as ``X-Api-Key``) goes on every
  HTTP request and on the WebSocket handshake, but never to another origin. Redirects are
  followed by hand, only to http(s): a GET that leaves the server's origin goes on through a
  second session that has no credentials and no cookies; a request with a body (a prompt, an
  upload) is never sent on to another origin; the WebSocket is never opened on a redirect to
  another origin. Every credential is registered with :mod:`storycore._redact`, so a server
  that echoes one back never gets it shown or stored.
* Every request has a total deadline (:attr:`ClientTimeouts.request_deadline`), not only a
  per-read timeout: a server that trickles a byte every few seconds cannot hang a command.
* Every answer is read within its endpoint's size limit (:class:`ClientLimits`).
* No ``Origin`` header is ever sent (a real ComfyUI answers 403 when Origin and Host differ).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from yarl import URL

from storycore._redact import remember_basic_auth, remember_secret
from storycore._text import terminal_safe
from storycore.comfyui._limits import ClientLimits, decode_json, read_limited
from storycore.comfyui._translate import translate_errors
from storycore.errors import ComfyUIError, ConfigError, ServerResponseError, ServerTimeout

__all__ = [
    "ClientLimits",
    "ClientTimeouts",
    "HttpResponse",
    "ServerAddress",
    "Transport",
    "translate_errors",
]

_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_FORBIDDEN_HEADERS = frozenset({"origin", "host", "content-length", "transfer-encoding"})
# Headers whose values are not credentials: everything else a user adds (X-Api-Key, Cookie,
# X-Auth-Token, ...) is treated as one, hidden in every text StoryCore shows or stores.
_PLAIN_HEADERS = frozenset(
    {"accept", "accept-language", "cache-control", "pragma", "user-agent", "x-requested-with"}
)


@dataclass(frozen=True)
class ServerAddress:
    """Where a ComfyUI server answers and how to authenticate to it.

    ``url`` is ``http(s)://host[:port][/prefix]``; every route is joined under the prefix
    (``/prefix/prompt``, ``/prefix/ws``). Credentials are hidden from ``repr``.
    ``verify_tls=False`` accepts any certificate (self-signed home servers); use with care.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify_tls: bool = True

    def __post_init__(self) -> None:
        try:
            parsed = URL(self.url.strip())
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"the ComfyUI URL {self.url!r} cannot be parsed ({exc})",
                where="server url",
                hint="write it like http://127.0.0.1:8188",
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"the ComfyUI URL {self.url!r} must start with http:// or https:// and name a host",
                where="server url",
                hint="write it like http://127.0.0.1:8188 or https://host/comfy",
            )
        if parsed.query_string or parsed.fragment or parsed.user or parsed.password:
            raise ConfigError(
                f"the ComfyUI URL {self.url!r} must not carry a query, fragment or credentials",
                where="server url",
                hint="put credentials in token=, basic_auth= or headers=",
            )
        if self.token is not None and self.basic_auth is not None:
            raise ConfigError(
                "both a bearer token and basic auth were given for one server",
                where="server auth",
                hint="choose one of them",
            )
        if self.basic_auth is not None:
            pair = tuple(self.basic_auth)
            if len(pair) != 2 or not all(isinstance(p, str) for p in pair) or not pair[0]:
                raise ConfigError(
                    "basic_auth must be a (user, password) pair of strings",
                    where="server auth",
                    hint="write basic_auth=('user', 'password')",
                )
            object.__setattr__(self, "basic_auth", pair)
        if self.token is not None and not self.token.strip():
            raise ConfigError("the bearer token is empty", where="server auth", hint="set a token")
        headers: dict[str, str] = {}
        for name, value in dict(self.headers).items():
            if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
                raise ConfigError(
                    f"header {name!r} must be a non-empty name with a string value",
                    where="server headers",
                    hint="use strings for header names and values",
                )
            if name.strip().lower() in _FORBIDDEN_HEADERS:
                raise ConfigError(
                    f"header {name!r} cannot be set",
                    where="server headers",
                    hint="ComfyUI refuses requests whose Origin differs from Host; remove it",
                )
            if "\n" in value or "\r" in value:
                raise ConfigError(
                    f"header {name!r} contains a line break",
                    where="server headers",
                    hint="remove the line break",
                )
            headers[name.strip()] = value
        normalized = str(parsed.with_path(parsed.path.rstrip("/") or "/"))
        object.__setattr__(self, "url", normalized.rstrip("/"))
        object.__setattr__(self, "headers", MappingProxyType(headers))
        # A server may echo a credential back in an error text: every one is redacted.
        remember_secret(
            self.token, *(v for k, v in headers.items() if k.lower() not in _PLAIN_HEADERS)
        )
        if self.basic_auth is not None:
            remember_basic_auth(*self.basic_auth)

    def __hash__(self) -> int:
        headers = tuple(sorted(self.headers.items()))
        return hash((self.url, self.token, self.basic_auth, headers, self.verify_tls))

    @property
    def base(self) -> URL:
        return URL(self.url)

    @property
    def prefix(self) -> str:
        """The path prefix (``""`` when the server sits at the root)."""
        return self.base.path.rstrip("/")

    def http_url(self, route: str) -> URL:
        """The URL of ``route`` (``/prompt``, ``/history/x``) under the prefix."""
        if not route.startswith("/"):
            route = "/" + route
        return self.base.with_path(self.prefix + route, encoded=False)

    def ws_url(self, client_id: str) -> URL:
        scheme = "wss" if self.base.scheme == "https" else "ws"
        return self.http_url("/ws").with_scheme(scheme).with_query(clientId=client_id)

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry credentials: sent to this origin only."""
        result = dict(self.headers)
        if self.token is not None:
            result["Authorization"] = f"Bearer {self.token}"
        elif self.basic_auth is not None:
            user, password = self.basic_auth
            raw = f"{user}:{password}".encode()
            result["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        return result

    def same_origin(self, url: URL) -> bool:
        return url.origin() == self.base.origin()


@dataclass(frozen=True)
class ClientTimeouts:
    """Every bound used when talking to one server (seconds).

    ``connect`` / ``read``: one connection / one read of an HTTP call or WebSocket handshake.
    ``request_deadline``: how long one HTTP request may take in all, its answer read whole (a
    download or an upload included), whatever the server trickles. ``prompt_deadline``: how long
    one prompt may take in all (``None`` = no limit, for long video jobs). ``idle_timeout``: how
    long the server may show no sign of life about a prompt. ``watchdog``: WebSocket silence
    after which the tracker polls. ``lost_grace``: how long a prompt may be absent from the
    queue and the history before it is reported lost. ``poll_interval``: HTTP polling period.
    ``reconnect_initial`` / ``reconnect_max``: WebSocket reconnect backoff.
    """

    connect: float = 5.0
    read: float = 30.0
    request_deadline: float = 120.0
    prompt_deadline: float | None = 3600.0
    idle_timeout: float = 300.0
    watchdog: float = 30.0
    lost_grace: float = 10.0
    poll_interval: float = 1.0
    reconnect_initial: float = 0.25
    reconnect_max: float = 10.0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "prompt_deadline":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(
                    f"timeout {item.name} must be a positive number of seconds, not {value!r}",
                    where=f"timeouts.{item.name}",
                    hint="use a value greater than 0",
                )
        if self.reconnect_max < self.reconnect_initial:
            raise ConfigError(
                "reconnect_max is smaller than reconnect_initial",
                where="timeouts.reconnect_max",
                hint="make reconnect_max at least reconnect_initial",
            )

    def replace(self, **changes: Any) -> ClientTimeouts:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class HttpResponse:
    """A fully read HTTP response (at most ``limit`` bytes)."""

    status: int
    body: bytes
    content_type: str
    url: URL
    limit: int = ClientLimits.other

    def json(self) -> Any:
        """The decoded JSON body; ``ValueError`` when it is not JSON, and
        :class:`~storycore.comfyui._limits.JsonTooComplex` when too deep or too big."""
        return decode_json(self.body, limit=self.limit)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Transport:
    """One aiohttp session bound to one :class:`ServerAddress` (and, for redirects that leave
    its origin, a second one without credentials or cookies)."""

    def __init__(
        self,
        address: ServerAddress,
        timeouts: ClientTimeouts,
        limits: ClientLimits | None = None,
    ) -> None:
        self.address = address
        self.timeouts = timeouts
        self.limits = limits or ClientLimits()
        self._session: aiohttp.ClientSession | None = None
        self._foreign: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise ComfyUIError(
                "the ComfyUI client is not open",
                where=self.address.url,
                hint="use 'async with ComfyUIClient(...)' or call open() first",
            )
        return self._session

    def _client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=self.timeouts.connect,
            sock_connect=self.timeouts.connect,
            sock_read=self.timeouts.read,
        )

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            guard = aiohttp.TraceConfig()
            guard.on_request_redirect.append(self._redirect_guard)
            self._session = aiohttp.ClientSession(
                timeout=self._client_timeout(),
                connector=aiohttp.TCPConnector(ssl=self.address.verify_tls),
                auto_decompress=True,
                # Cookies set by a proxy may be needed; kept in this session, which talks to
                # the server's origin only (other origins go through the foreign session).
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                trace_configs=[guard],
            )

    def _foreign_session(self) -> aiohttp.ClientSession:
        """The session for another origin a GET was redirected to: no credentials, no cookies,
        certificates always checked."""
        if self._foreign is None or self._foreign.closed:
            self._foreign = aiohttp.ClientSession(
                timeout=self._client_timeout(),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._foreign

    async def close(self) -> None:
        for session in (self._session, self._foreign):
            if session is not None and not session.closed:
                await session.close()
        self._session = self._foreign = None

    # ------------------------------------------------------------------ bounds
    @contextlib.asynccontextmanager
    async def deadline(self, where: str, action: str) -> AsyncIterator[None]:
        """Bound the block by :attr:`ClientTimeouts.request_deadline` (a :class:`ServerTimeout`
        naming ``action`` when it passes), whatever the server trickles."""
        seconds = self.timeouts.request_deadline
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise ServerTimeout(
                f"no complete answer to {action} within {seconds:g} s (the deadline of one "
                "request: the server answers too slowly, or trickles its answer)",
                where=where,
                hint="check the server and the network; raise comfyui.request_deadline if it "
                "is only slow",
            ) from None

    # ------------------------------------------------------------------ redirects
    def _redirect_target(self, current: URL, location: str, where: str, action: str) -> URL:
        """Where a redirect leads, if it is an http(s) URL; otherwise a clear error."""
        try:
            target = current.join(URL(location))
            usable = target.scheme in ("http", "https") and bool(target.host)
        except (TypeError, ValueError):
            usable = False
        if not usable:
            shown = terminal_safe(location[:200], keep_newlines=False)
            raise ServerResponseError(
                f"{action} was redirected to {shown!r}, which is not an http:// or https:// "
                "URL; StoryCore follows redirects only to those",
                where=where,
                hint="check the server or the reverse proxy in front of it",
            )
        return target

    def _cross_origin_refused(self, target: URL, where: str, action: str) -> ServerResponseError:
        return ServerResponseError(
            f"{action} was redirected to another origin ({target.origin()}); a request that "
            "carries data is never sent on to another server",
            where=where,
            hint="use the URL the server redirects to as the server URL, if it is yours",
        )

    async def _redirect_guard(
        self,
        session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        """aiohttp follows redirects itself only for the WebSocket handshake: refuse any that
        leaves the server's origin, before the handshake (and its credentials) goes there."""
        location = params.response.headers.get("Location", "")
        where = str(params.url.with_query(None))
        target = self._redirect_target(params.url, location, where, "the WebSocket handshake")
        if not self.address.same_origin(target):
            raise ServerResponseError(
                f"the WebSocket handshake was redirected to another origin ({target.origin()}); "
                "StoryCore never opens a WebSocket there (it would carry the credentials)",
                where=where,
                hint="use the URL the server redirects to as the server URL, if it is yours",
            )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request, follow redirects by hand and yield the final response, unread.

        Credentials and cookies are sent only to the server's origin. A GET redirected to
        another origin goes on without them; anything else is refused there. Errors are not
        translated here (callers wrap this in :func:`translate_errors`) and no deadline is set
        (callers use :meth:`deadline`).
        """
        url = self.address.http_url(route)
        if params:
            url = url.with_query(dict(params))
        where = str(self.address.http_url(route))
        action = f"{method} {route}"
        for _ in range(_MAX_REDIRECTS + 1):
            same = self.address.same_origin(url)
            if not same and (method.upper() != "GET" or data is not None or json_body is not None):
                raise self._cross_origin_refused(url, where, action)
            session = self.session if same else self._foreign_session()
            response = await session.request(
                method,
                url,
                headers=self.address.auth_headers() if same else {},
                json=json_body if data is None else None,
                data=data,
                allow_redirects=False,
            )
            if response.status in _REDIRECT_STATUSES and "Location" in response.headers:
                location = response.headers["Location"]
                response.release()
                url = self._redirect_target(url, location, where, action)
                if response.status == 303 or (
                    response.status in (301, 302) and method.upper() == "POST"
                ):
                    method, json_body, data = "GET", None, None
                continue
            try:
                yield response
            finally:
                response.release()
            return
        raise ServerResponseError(
            f"more than {_MAX_REDIRECTS} redirects",
            where=where,
            hint="check the reverse proxy configuration",
        )

    # ------------------------------------------------------------------ calls
    async def request(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
    ) -> HttpResponse:
        """Send a request and read the whole body within the route's size limit and the
        request deadline; errors translated."""
        where = str(self.address.http_url(route))
        action = f"{method} {route}"
        limit, setting = self.limits.for_route(route)
        async with self.deadline(where, action):
            with translate_errors(where, action=action, timeouts=self.timeouts):
                async with self.stream(
                    method, route, params=params, json_body=json_body, data=data
                ) as response:
                    body = await read_limited(
                        response, limit=limit, setting=setting, where=where, action=action
                    )
                    return HttpResponse(
                        status=response.status,
                        body=body,
                        content_type=response.headers.get("Content-Type", ""),
                        url=response.url,
                        limit=limit,
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    async def ws_connect(self, client_id: str) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket for ``client_id`` with the credentials; no Origin header, never
        on a redirect to another origin, the handshake within the request deadline."""
        url = self.address.ws_url(client_id)
        where = str(url.with_query(None))
        async with self.deadline(where, "opening the WebSocket"):
            with translate_errors(where, action="opening the WebSocket", timeouts=self.timeouts):
                return await self.session.ws_connect(
                    url,
                    headers=self.address.auth_headers(),
                    timeout=aiohttp.ClientWSTimeout(
                        ws_receive=None, ws_close=self.timeouts.connect
                    ),
                    autoping=True,
                    heartbeat=max(1.0, self.timeouts.watchdog),
                    max_msg_size=self.limits.ws_message,
                )
        raise AssertionError("unreachable")  # pragma: no cover
