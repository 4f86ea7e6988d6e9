"""Credentials reach only their server: redirects to another origin, over HTTP and WebSocket.

The user config gives the server a bearer token and an ``X-Api-Key`` header (custom headers are
credentials too), or basic auth; the server sets a session cookie. The hostile server then
redirects some routes to a second server on another origin, which records everything it gets.
None of the credentials, the cookie included, may ever arrive there; a GET may be followed
there without them (hosted servers send ``/view`` to storage), a request with a body never is,
and the WebSocket is never opened there. Before issue 15 the handshake went to the other origin
with the key, the cookie went along with every redirected GET, and a redirected prompt was sent
on.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from storycore.emulator import Emulator
from storycore.manifest import records
from storycore.project import load_project
from tests.security._support import relay_ws, serve
from tests.security.test_hostile_http import assert_failed_clearly, relay, render

TOKEN = "tok-5f1e2d3c4b5a6978"
KEY = "key-0a1b2c3d4e5f6789"
USER, PASSWORD = "studio", "pw-9a8b7c6d5e4f"
COOKIE = "sess-c0ffee1234567890"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (TOKEN, KEY, PASSWORD, COOKIE, BASIC)

TOKEN_AND_KEY = f"""
[[backends]]
url = "{{url}}"
token = "{TOKEN}"
headers = {{ "X-Api-Key" = "{KEY}" }}
"""
BASIC_AND_KEY = f"""
[[backends]]
url = "{{url}}"
username = "{USER}"
password = "{PASSWORD}"
headers = {{ "X-Api-Key" = "{KEY}" }}
"""
CONFIGS = {"token": TOKEN_AND_KEY, "basic": BASIC_AND_KEY}


class Other:
    """The server on another origin: relays to the emulator, records every request."""

    def __init__(self, holder: dict[str, Emulator]) -> None:
        self.holder = holder
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self.view_body: bytes | None = None  # what /view answers instead of the real image

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            async with ClientSession() as session:
                return await relay_ws(request, session, self.holder["emu"].url)
        if request.path == "/view" and self.view_body is not None:
            return web.Response(body=self.view_body, content_type="text/html")
        status, body, ctype = await relay(self.holder["emu"], request)
        return web.Response(body=body, status=status, content_type=ctype.split(";")[0])

    def leaked(self) -> list[str]:
        """Every credential that arrived here, and where."""
        found = []
        for method, path, headers in self.requests:
            for name, value in headers.items():
                if name.lower() in ("authorization", "x-api-key", "cookie") or any(
                    secret in value for secret in SECRETS
                ):
                    found.append(f"{method} {path} {name}: {value}")
        return found


@asynccontextmanager
async def other_origin(holder: dict[str, Emulator]) -> AsyncIterator[Other]:
    other = Other(holder)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", other.handle)
    async with serve(app) as url:
        other.url = url
        yield other


def moved_to(other: Other, status: int = 302) -> web.RequestHandler:  # type: ignore[name-defined]
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": other.url + request.path_qs})

    return handler


def with_cookie(holder: dict[str, Emulator]) -> web.RequestHandler:  # type: ignore[name-defined]
    """``/system_stats`` as the emulator answers it, with a session cookie set."""

    async def handler(request: web.Request) -> web.Response:
        status, body, _ctype = await relay(holder["emu"], request)
        response = web.Response(body=body, status=status, content_type="application/json")
        response.set_cookie("session", COOKIE)
        return response

    return handler


@pytest.mark.parametrize("auth", list(CONFIGS))
async def test_redirected_gets_go_on_without_credentials_or_cookies(
    tmp_path: Path, auth: str
) -> None:
    holder: dict[str, Emulator] = {}
    async with other_origin(holder) as other:
        overrides = {
            "GET /system_stats": with_cookie(holder),
            "GET /object_info": moved_to(other),
            "GET /view": moved_to(other),
        }
        result, root = await render(tmp_path, overrides, holder=holder, config=CONFIGS[auth])
    result.assert_bounded(seconds=40)
    assert result.rc == 0, result.output[-3000:]
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]
    paths = {path for _method, path, _headers in other.requests}
    assert {"/object_info", "/view"} <= paths
    assert other.leaked() == []


async def test_a_prompt_is_never_sent_on_to_another_origin(tmp_path: Path) -> None:
    holder: dict[str, Emulator] = {}
    async with other_origin(holder) as other:
        overrides = {"POST /prompt": moved_to(other, status=307)}
        result, root = await render(tmp_path, overrides, holder=holder, config=TOKEN_AND_KEY)
    assert_failed_clearly(result, 8, "was redirected to another origin")
    assert other.requests == []
    assert records(load_project(root)) == []


@pytest.mark.parametrize("auth", list(CONFIGS))
async def test_the_websocket_is_never_opened_on_a_redirect_to_another_origin(
    tmp_path: Path, auth: str
) -> None:
    """The prompt is still followed (by polling), and the other origin hears nothing."""
    holder: dict[str, Emulator] = {}
    async with other_origin(holder) as other:
        overrides = {"GET /ws": moved_to(other)}
        result, root = await render(tmp_path, overrides, holder=holder, config=CONFIGS[auth])
    result.assert_bounded(seconds=40)
    assert other.requests == [], other.leaked()
    assert result.rc == 0, result.output[-3000:]
    assert [r.shot_id for r in records(load_project(root))] == ["shot_01"]


async def test_a_download_redirected_to_another_origin_must_be_an_image(tmp_path: Path) -> None:
    holder: dict[str, Emulator] = {}
    async with other_origin(holder) as other:
        other.view_body = b"<html><form>sign in to the storage</form></html>"
        overrides = {"GET /view": moved_to(other)}
        result, root = await render(tmp_path, overrides, holder=holder, config=TOKEN_AND_KEY)
    assert_failed_clearly(result, 8, "is not an image StoryCore can read")
    assert [path for _m, path, _h in other.requests] == ["/view"]
    assert other.leaked() == []
    assert records(load_project(root)) == []


async def test_credentials_a_server_echoes_back_are_never_shown_or_stored(tmp_path: Path) -> None:
    """The refusal quotes the request's Authorization and X-Api-Key headers back."""

    async def echo(request: web.Request) -> web.Response:
        quoted = f"{request.headers.get('Authorization')} / {request.headers.get('X-Api-Key')}"
        body = {
            "error": {"type": "bad", "message": f"refused {quoted}", "details": quoted},
            "node_errors": {},
        }
        return web.json_response(body, status=400)

    result, root = await render(tmp_path, {"POST /prompt": echo}, config=TOKEN_AND_KEY)
    assert_failed_clearly(result, 8, "refused")
    assert "***" in result.output
    for secret in (TOKEN, KEY):
        assert secret not in result.output
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
