"""The review page's HTTP API against a real loopback server and a rendered project: pages,
paged cards, images, the shot actions (written to the project), SSE, previews, and renders on
the emulator started, stopped and cancelled from the page."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions
from storycore.review._security import CSP
from tests.review.conftest import (
    Page,
    project_json,
    records_of,
    review_server,
    wait_idle,
)


async def test_page_and_static_files(project: Path) -> None:
    async with review_server(project) as (_server, page):
        async with await page.get("/") as answer:
            html = await answer.text()
            assert answer.status == 200
            assert answer.headers["Content-Security-Policy"] == CSP
            assert answer.headers["Cache-Control"] == "no-store"
        assert f'<meta name="storycore-csrf" content="{page.csrf}">' in html
        assert "{{csrf}}" not in html
        async with await page.get("/static/review.js") as answer:
            assert answer.status == 200
            assert answer.content_type == "text/javascript"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        async with await page.get("/static/nothing.js") as answer:
            assert answer.status == 404
            assert "error" in await answer.json()


async def test_meta_and_paged_board(project: Path) -> None:
    async with review_server(project) as (_server, page):
        meta = await page.json("api/meta")
        assert meta["project_id"] == "storycore_lighthouse_keeper"
        assert meta["total"] == 7 and len(meta["token"]) == 64
        assert {"draft", "final"} <= set(meta["profiles"])
        assert meta["render"]["state"] == "idle"
        first = await page.json("api/board?offset=0&limit=2")
        rest = await page.json("api/board?offset=2&limit=500")
        assert first["total"] == 7 and first["offset"] == 0
        ids = [c["shot_id"] for c in first["cards"] + rest["cards"]]
        assert ids == [f"shot_{n:02d}" for n in range(1, 8)]
        one = first["cards"][0]
        assert [t["render"] for t in one["takes"]] == [1, 2]
        assert one["active"]["render"] == 2 and one["needs_take"] is False
        assert first["cards"][1]["takes"][0]["seed"] == 21
        for bad in ("limit=501", "limit=0", "offset=-1", "limit=x"):
            async with await page.get(f"api/board?{bad}") as answer:
                assert answer.status == 400, bad
                assert "must be a whole number" in (await answer.json())["error"]


async def test_media_and_thumbnails(project: Path) -> None:
    async with review_server(project) as (_server, page):
        card = (await page.json("api/board?limit=1"))["cards"][0]
        take = card["takes"][0]
        async with await page.get(f"media/{take['asset_id']}") as answer:
            body = await answer.read()
            etag = answer.headers["ETag"]
            assert answer.status == 200 and answer.content_type == "image/png"
        assert hashlib.sha256(body).hexdigest() == take["sha256"]
        assert body == (project / take["path"]).read_bytes()
        async with await page.get(
            f"media/{take['asset_id']}", headers={"If-None-Match": etag}
        ) as a:
            assert a.status == 304
        async with await page.get(f"thumb/{take['asset_id']}") as answer:
            jpeg = await answer.read()
            assert answer.status == 200 and answer.content_type == "image/jpeg"
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG" and image.size == (64, 36)
            red = image.convert("RGB").getpixel((32, 18))
        assert isinstance(red, tuple) and red[0] > 150 > red[1]  # the first take is red
        async with await page.get("thumb/shot_07-v1-r001") as answer:
            assert answer.status == 404


async def test_actions_write_the_project_and_answer_the_card(project: Path) -> None:
    async with review_server(project) as (_server, page):
        first = records_of(project, "shot_01")[0]["asset_id"]
        answer = await page.act("api/shots/shot_01/pick", {"asset_id": first})
        assert answer["ok"] is True and answer["card"]["active"]["asset_id"] == first
        assert project_json(project)["shots_index"]["shot_01"]["active_asset"] == first

        answer = await page.act("api/shots/shot_01/approve", {"approved": True})
        assert answer["card"]["active"]["approved"] is True
        assert next(r for r in records_of(project, "shot_01") if r["asset_id"] == first)["approved"]

        answer = await page.act("api/shots/shot_02/reject", {})
        assert answer["card"]["needs_take"] is True
        assert records_of(project, "shot_02")[0]["rejected"] is True

        answer = await page.act("api/shots/shot_03/comment", {"text": "darker sky <b>"})
        assert answer["card"]["comment"] == "darker sky <b>"
        review = project_json(project)["shots_index"]["shot_03"]["x_review"]
        assert review["comment"] == "darker sky <b>"

        await page.act("api/shots/shot_01/pick", {"asset_id": "shot_01-v1-r999"}, status=400)
        await page.act("api/shots/nope/comment", {"text": "x"}, status=404)
        await page.act("api/shots/shot_01/pick", {}, status=400)
        await page.act("api/shots/shot_01/approve", {"approved": "yes"}, status=400)


async def test_edit_writes_the_storyboard_and_refuses_a_stale_token(project: Path) -> None:
    async with review_server(project) as (_server, page):
        token = (await page.json("api/meta"))["token"]
        changes = {"prompt_modules": {"subject": "a red rowing boat", "technical": {"steps": 12}}}
        answer = await page.act("api/shots/shot_04/edit", {"changes": changes, "token": token})
        assert answer["card"]["modules"]["subject"] == "a red rowing boat"
        assert answer["card"]["technical"]["steps"] == 12
        board = json.loads((project / "storyboard.json").read_text("utf-8"))
        shot = next(s for s in board["shots"] if s["shot_id"] == "shot_04")
        assert shot["prompt_modules"]["subject"] == "a red rowing boat"
        assert answer["token"] != token
        assert (
            answer["token"]
            == hashlib.sha256((project / "storyboard.json").read_bytes()).hexdigest()
        )

        before = (project / "storyboard.json").read_bytes()
        stale = await page.act(
            "api/shots/shot_04/edit", {"changes": changes, "token": token}, status=409
        )
        assert "storyboard.json" in stale["error"]
        assert (project / "storyboard.json").read_bytes() == before


async def _next_event(lines: Any, kind: str, seconds: float = 10.0) -> dict[str, Any]:
    """The data of the next SSE event of ``kind`` (bounded)."""
    event = None
    async with asyncio.timeout(seconds):
        async for raw in lines:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == kind:
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return data
    raise AssertionError(f"the stream ended before a {kind!r} event")


async def test_events_stream_render_state_and_changed_cards(project: Path) -> None:
    server = review_server(project, ping_s=0.5)
    async with server as (_server, page), await page.get("api/events") as stream:
        assert stream.status == 200
        assert stream.content_type == "text/event-stream"
        assert stream.headers["Content-Security-Policy"] == CSP
        render = await _next_event(stream.content, "render")
        assert render["state"] == "idle"
        await page.act("api/shots/shot_05/comment", {"text": "wider"})
        card = await _next_event(stream.content, "card")
        while card["card"]["shot_id"] != "shot_05":  # a card of another change
            card = await _next_event(stream.content, "card")
        assert card["card"]["comment"] == "wider"
        async with asyncio.timeout(5):  # a ping comment keeps an idle stream open
            while (await stream.content.readline()) != b": ping\n":
                pass


async def test_preview_served_only_from_the_previews_folder(project: Path) -> None:
    previews = project / ".storycore" / "previews"
    previews.mkdir(parents=True)
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 9), (1, 2, 3)).save(jpeg, format="JPEG")
    (previews / "shot_01_2-abc.jpg").write_bytes(jpeg.getvalue())
    live = {
        "version": 1,
        "running": True,
        "panels": {
            "shot_01#2": {"preview": ".storycore/previews/shot_01_2-abc.jpg"},
            "shot_02": {"preview": "project.json"},
            "shot_03": {"preview": ".storycore/previews/../../storyboard.json"},
        },
    }
    (project / ".storycore" / "live.json").write_text(json.dumps(live))
    async with review_server(project) as (_server, page):
        async with await page.get("preview/shot_01%232") as answer:
            assert answer.status == 200 and answer.content_type == "image/jpeg"
            assert await answer.read() == jpeg.getvalue()
        for key in ("shot_02", "shot_03", "shot_04", "..%2Fproject.json"):
            async with await page.get(f"preview/{key}") as answer:
                assert answer.status == 404, key
                assert "storycore_lighthouse" not in await answer.text()


async def test_render_new_takes_on_the_emulator(tmp_path: Path, project: Path) -> None:
    before = {r["asset_id"] for r in records_of(project, "shot_03")}
    async with Emulator() as emu, review_server(project, backends=(emu.url,)) as (_s, page):
        answer = await page.act(
            "api/render", {"shots": ["shot_03"], "profile": "draft", "new_takes": 1}, status=202
        )
        assert answer["render"]["state"] == "running"
        render = await wait_idle(page)
        assert render["summary"]["ok"] is True, render
        assert render["summary"]["counts"]["rendered"] == 1
    new = [r for r in records_of(project, "shot_03") if r["asset_id"] not in before]
    assert len(new) == 1 and new[0]["placeholder"] is False
    assert (project / new[0]["path"]).is_file()


async def _slow_render(page: Page) -> None:
    await page.act("api/render", {"shots": [], "new_takes": 1}, status=202)
    await page.act("api/render", {"shots": []}, status=409)  # one at a time
    assert (await page.json("api/meta"))["render"]["state"] == "running"
    await asyncio.sleep(0.5)  # panels reach the (slow) server


async def test_stop_and_cancel_end_the_render(project: Path) -> None:
    options = EmulatorOptions(step_seconds=0.2)
    async with Emulator(options) as emu, review_server(project, backends=(emu.url,)) as (_s, page):
        await _slow_render(page)
        answer = await page.act("api/render/stop", {})
        assert answer["render"]["state"] == "stopping"
        render = await wait_idle(page)
        assert render["summary"]["stopped"] is True
        assert render["summary"]["counts"]["stopped"] > 0

        await _slow_render(page)
        answer = await page.act("api/render/cancel", {})
        assert answer["render"]["state"] == "stopping"
        render = await wait_idle(page, 30)
        assert render["summary"]["ok"] is False
        await page.act("api/render/stop", {}, status=409)  # nothing runs now


async def test_bad_render_requests(project: Path) -> None:
    async with review_server(project) as (_server, page):
        await page.act("api/render", {"shots": ["nope"]}, status=404)
        await page.act("api/render", {"profile": "nope"}, status=400)
        await page.act("api/render", {"new_takes": 1000}, status=400)
        await page.act("api/render", {"shots": "shot_01"}, status=400)
        assert (await page.json("api/meta"))["render"]["state"] == "idle"


async def test_a_render_is_followed_on_the_event_stream(project: Path) -> None:
    async with (
        Emulator() as emu,
        review_server(project, backends=(emu.url,)) as (_server, page),
        await page.get("api/events") as stream,
    ):
        assert (await _next_event(stream.content, "render"))["state"] == "idle"
        await page.act("api/render", {"shots": ["shot_06"], "new_takes": 1}, status=202)
        states: list[str] = []
        card: dict[str, Any] | None = None
        event = None
        async with asyncio.timeout(60):  # the render's states and the new take, in any order
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    if event == "render":
                        states.append(data["state"])
                        summary = data.get("summary")
                    elif event == "card" and data["card"]["shot_id"] == "shot_06":
                        card = data["card"] if data["card"]["takes"] else card
                if states[-1:] == ["idle"] and card is not None:
                    break
        assert states[0] == "running" and states[-1] == "idle"
        assert summary["counts"]["rendered"] == 1
        assert card["active"]["placeholder"] is False
