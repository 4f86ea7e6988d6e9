"""Attacks on the review server, over real loopback: no token on a non-loopback bind, no CSRF
header, another Host (DNS rebinding), big and deep bodies, path-ish asset ids and keys, links
planted in the project; every answer carries the CSP, errors included."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar
from yarl import URL

from storycore.review._security import CSP, MAX_BODY
from tests.review.conftest import CSRF, Page, project_json, review_server

SECRET = b"TOP-SECRET-OUTSIDE-THE-PROJECT"


def _assert_headers(headers: Mapping[str, str]) -> None:
    assert headers.get("Content-Security-Policy") == CSP
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "no-referrer"


async def test_a_non_loopback_bind_needs_the_token(project: Path) -> None:
    async with review_server(project, host="0.0.0.0") as (server, page):
        token = server.policy.token
        assert token and server.page_url.endswith(f"?token={token}")
        # unsafe=True: the jar keeps cookies of an IP address (a browser does)
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as anonymous:
            for path in ("", "api/meta", "api/board", "static/review.js", "api/events"):
                async with anonymous.get(page.url + path) as answer:
                    assert answer.status == 401, path
                    _assert_headers(answer.headers)
                    assert "token" in (await answer.json())["error"]
            bad = {"Authorization": "Bearer wrong"}
            async with anonymous.get(page.url + "api/meta", headers=bad) as answer:
                assert answer.status == 401
            async with anonymous.get(page.url + "?token=wrong", allow_redirects=False) as answer:
                assert answer.status == 401
                assert "Set-Cookie" not in answer.headers
            async with anonymous.get(page.url + f"?token={token}", allow_redirects=False) as a:
                assert a.status == 303 and a.headers["Location"] == "/"
                cookie = a.headers["Set-Cookie"]
                _assert_headers(a.headers)
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert f"={token}" in cookie
            # the cookie now opens the page, the data and the stream
            async with anonymous.get(page.url + "api/meta") as answer:
                assert answer.status == 200
            async with anonymous.get(page.url) as answer:
                assert answer.status == 200 and "storycore-csrf" in await answer.text()
        async with ClientSession() as script:
            headers = {"Authorization": f"Bearer {token}"}
            async with script.get(page.url + "api/board", headers=headers) as answer:
                assert answer.status == 200


async def test_loopback_bind_has_no_token(project: Path) -> None:
    async with review_server(project) as (server, page):
        assert server.policy.token is None and "token" not in server.page_url
        async with await page.get("api/meta") as answer:
            assert answer.status == 200


async def test_a_change_needs_the_csrf_header(project: Path) -> None:
    before = (project / "project.json").read_bytes()
    async with review_server(project) as (_server, page):
        for headers in ({}, {CSRF: "wrong"}, {CSRF: ""}):
            async with page.session.post(
                page.url + "api/shots/shot_01/comment", json={"text": "x"}, headers=headers
            ) as answer:
                assert answer.status == 403
                _assert_headers(answer.headers)
                assert CSRF in (await answer.json())["error"]
        # a cross-site form post (no header, form encoding) is refused the same way
        async with page.session.post(page.url + "api/render", data={"shots": "shot_01"}) as answer:
            assert answer.status == 403
    assert (project / "project.json").read_bytes() == before


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost:{port}0", "", "[::1"],
)
async def test_another_host_is_refused(project: Path, host: str) -> None:
    async with review_server(project) as (server, page):
        value = host.format(port=server.policy.port)
        async with page.session.get(page.url + "api/meta", headers={"Host": value}) as answer:
            assert answer.status == 421, value
            _assert_headers(answer.headers)
            assert "host name" in (await answer.json())["error"]
        ok = {"Host": f"localhost:{server.policy.port}"}
        async with page.session.get(page.url + "api/meta", headers=ok) as answer:
            assert answer.status == 200


async def test_big_and_odd_bodies(project: Path) -> None:
    async with review_server(project) as (_server, page):
        big = io.BytesIO(json.dumps({"text": "x" * (MAX_BODY + 10)}).encode())
        async with page.session.post(
            page.url + "api/shots/shot_01/comment", data=big, headers={CSRF: page.csrf}
        ) as answer:
            assert answer.status == 413
            _assert_headers(answer.headers)
            assert "body" in (await answer.json())["error"]

        async def chunks():  # no Content-Length: the bound holds as it is read
            for _ in range(MAX_BODY // 65536 + 2):
                yield b"x" * 65536

        async with page.session.post(
            page.url + "api/shots/shot_01/comment", data=chunks(), headers={CSRF: page.csrf}
        ) as answer:
            assert answer.status == 413
        deep = io.BytesIO(b"[" * 100_000 + b"]" * 100_000)
        async with page.session.post(
            page.url + "api/render", data=deep, headers={CSRF: page.csrf}
        ) as answer:
            assert answer.status == 400
            assert "JSON" in (await answer.json())["error"]
        async with await page.post("api/render", ["a list"]) as answer:
            assert answer.status == 400
        async with page.session.post(
            page.url + "api/render", data=b"\xff\xfe", headers={CSRF: page.csrf}
        ) as answer:
            assert answer.status == 400
    assert project_json(project)["shots_index"]["shot_01"].get("x_review") is None


async def _refused(page: Page, path: str) -> str:
    # encoded=True: the path goes out as written, not normalised by the client
    async with page.session.get(URL(page.url + path, encoded=True)) as answer:
        body = await answer.read()
        assert answer.status in (403, 404), (path, answer.status)
        _assert_headers(answer.headers)
        assert json.loads(body)["error"]
    assert SECRET not in body and b"project_id" not in body
    return body.decode()


async def test_path_ish_ids_serve_nothing(tmp_path: Path, project: Path) -> None:
    (tmp_path / "secret.png").write_bytes(SECRET)
    async with review_server(project) as (_server, page):
        for path in (
            "media/..%2Fproject.json",
            "media/%2e%2e",
            "media/%2e%2e%2f%2e%2e%2fsecret.png",
            "thumb/..%2F..%2Fsecret.png",
            "thumb/%2e%2e",
            "media/generated_images%2Fshot_01%2Fv1%2Fr001.png",
            "preview/..%2F..%2Fsecret.png",
            "static/..%2F_app.py",
            "static/%2e%2e%2f_http.py",
            "static/index.html",
        ):
            await _refused(page, path)
        for path in ("media/../../secret.png", "static/../../project.json"):
            async with page.session.get(page.url + path) as answer:  # normalised by the client
                assert answer.status == 404 and SECRET not in await answer.read()


async def test_records_and_links_that_leave_the_project(tmp_path: Path, project: Path) -> None:
    (tmp_path / "secret.png").write_bytes(SECRET)
    data = project_json(project)
    items = data["asset_manifest"]["generated_images"]
    items[0]["path"] = "../secret.png"  # edited by hand: a record pointing out
    (project / "project.json").write_text(json.dumps(data, indent=2))
    linked = items[2]["path"]  # shot_02's render replaced by a link out of the project
    os.unlink(project / linked)
    os.symlink(tmp_path / "secret.png", project / linked)
    async with review_server(project) as (_server, page):
        for asset_id in (items[0]["asset_id"], items[2]["asset_id"]):
            for route in ("media", "thumb"):
                await _refused(page, f"{route}/{asset_id}")
        async with await page.get(f"media/{items[1]['asset_id']}") as answer:
            assert answer.status == 200  # the honest take is still served


async def test_errors_carry_the_headers(project: Path) -> None:
    async with review_server(project) as (_server, page):
        async with page.session.get(page.url + "no/such/route") as answer:
            assert answer.status == 404
            _assert_headers(answer.headers)
            assert (await answer.json())["error"]
        async with page.session.put(page.url + "api/meta", headers={CSRF: page.csrf}) as answer:
            assert answer.status == 405
            _assert_headers(answer.headers)
            assert "PUT" in (await answer.json())["error"]
        async with page.session.get(page.url + "api/render") as answer:
            assert answer.status == 405
            _assert_headers(answer.headers)
