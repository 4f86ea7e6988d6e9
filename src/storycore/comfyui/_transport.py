"""HTTP and WebSocket transport to one ComfyUI server.

Holds the server address (base URL with any reverse-proxy path prefix, authentication), the
timeouts and one aiohttp session. Errors are translated by :func:`translate_errors` (in
:mod:`storycore.comfyui._translate`, re-exported here), the one place where aiohttp and OS
errors become :mod:`storycore.errors` classes.

Rules kept here:

* Authentication (bearer token, basic auth, custom headers) goes on every HTTP request and on the
  WebSocket handshake, but never to another origin: redirects are followed by hand and the
  credentials are dropped as soon as a redirect leaves the server's origin.
* No ``Origin`` header is ever sent (a real ComfyUI answers 403 when Origin and Host differ).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from yarl import URL

from storycore.comfyui._translate import translate_errors
from storycore.errors import ComfyUIError, ConfigError, ServerResponseError

__all__ = [
    "ClientTimeouts",
    "HttpResponse",
    "ServerAddress",
    "Transport",
    "translate_errors",
]

_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_FORBIDDEN_HEADERS = frozenset({"origin", "host", "content-length", "transfer-encoding"})


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

    ``connect`` / ``read``: one HTTP call or WebSocket handshake. ``prompt_deadline``: how long
    one prompt may take in all (``None`` = no limit, for long video jobs). ``idle_timeout``: how
    long the server may show no sign of life about a prompt. ``watchdog``: WebSocket silence
    after which the tracker polls. ``lost_grace``: how long a prompt may be absent from the
    queue and the history before it is reported lost. ``poll_interval``: HTTP polling period.
    ``reconnect_initial`` / ``reconnect_max``: WebSocket reconnect backoff.
    """

    connect: float = 5.0
    read: float = 30.0
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
    """A fully read HTTP response."""

    status: int
    body: bytes
    content_type: str
    url: URL

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Transport:
    """One aiohttp session bound to one :class:`ServerAddress`."""

    def __init__(self, address: ServerAddress, timeouts: ClientTimeouts) -> None:
        self.address = address
        self.timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

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
            self._session = aiohttp.ClientSession(
                timeout=self._client_timeout(),
                connector=aiohttp.TCPConnector(ssl=self.address.verify_tls),
                auto_decompress=True,
                # Cookies set by a proxy may be needed; keep them per session, per origin.
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

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

        Credentials are sent only while the URL stays on the server's origin. Errors are not
        translated here; callers wrap this in :func:`translate_errors`.
        """
        url = self.address.http_url(route)
        if params:
            url = url.with_query(dict(params))
        for _ in range(_MAX_REDIRECTS + 1):
            headers = self.address.auth_headers() if self.address.same_origin(url) else {}
            response = await self.session.request(
                method,
                url,
                headers=headers,
                json=json_body if data is None else None,
                data=data,
                allow_redirects=False,
            )
            if response.status in _REDIRECT_STATUSES and "Location" in response.headers:
                location = URL(response.headers["Location"])
                response.release()
                url = url.join(location) if not location.is_absolute() else location
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
            where=str(self.address.http_url(route)),
            hint="check the reverse proxy configuration",
        )

    async def request(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
    ) -> HttpResponse:
        """Send a request and read the whole body; errors translated."""
        where = str(self.address.http_url(route))
        with translate_errors(where, action=f"{method} {route}", timeouts=self.timeouts):
            async with self.stream(
                method, route, params=params, json_body=json_body, data=data
            ) as response:
                body = await response.read()
                return HttpResponse(
                    status=response.status,
                    body=body,
                    content_type=response.headers.get("Content-Type", ""),
                    url=response.url,
                )

    async def ws_connect(self, client_id: str) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket for ``client_id`` with the credentials; no Origin header."""
        url = self.address.ws_url(client_id)
        with translate_errors(
            str(url.with_query(None)), action="opening the WebSocket", timeouts=self.timeouts
        ):
            return await self.session.ws_connect(
                url,
                headers=self.address.auth_headers(),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.timeouts.connect),
                autoping=True,
                heartbeat=max(1.0, self.timeouts.watchdog),
                max_msg_size=64 * 1024 * 1024,
            )
