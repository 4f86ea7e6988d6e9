"""The live board feed (review/_feed.py, _watch.py) on real files, real OS notifications
(watchfiles), real renders and a second process editing the project."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, RenderRequest
from storycore.engine._live import LiveStatus
from storycore.errors import ProjectError
from storycore.review import BoardFeed
from tests.engine.conftest import fast_settings, make_project
from tests.review._support_live import Collector, card_of, child_edit, wait_until


def _storyboard(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "storyboard.json").read_text())
    return data


def _write_storyboard(root: Path, board: dict[str, Any]) -> None:
    (root / "storyboard.json").write_text(json.dumps(board, indent=2))


async def test_another_process_editing_project_json_sends_a_card(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with BoardFeed(root) as feed:
        assert [c.shot_id for c in feed.cards()] == ["shot_01", "shot_02", "shot_03"]
        pages = [Collector(feed.subscribe()), Collector(feed.subscribe())]
        await child_edit(
            root / "project.json",
            """
            entry = data["shots_index"]["shot_02"]
            entry["x_review"] = {"comment": "warmer light", "comment_at": "2026-01-01T00:00:00Z"}
            """,
        )
        for page in pages:
            message = await page.wait_for(card_of("shot_02", lambda c: c["comment"] != ""))
            assert message["card"]["comment"] == "warmer light"
        await asyncio.sleep(0.4)
        for page in pages:  # only the card that changed, and no board message
            assert [m["card"]["shot_id"] for m in page.of("card")] == ["shot_02"]
            assert page.of("board") == []
        assert feed.card("shot_02") is not None and feed.card("shot_02").comment == "warmer light"  # type: ignore[union-attr]
        for page in pages:
            await page.close()


async def test_a_half_edited_storyboard_keeps_the_board_and_says_why_once(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    async with BoardFeed(root) as feed:
        token = feed.token
        page = Collector(feed.subscribe())
        good = _storyboard(root)
        (root / "storyboard.json").write_text(json.dumps(good)[:-40])  # an editor mid-save
        error = await page.wait_for(lambda m: m["type"] == "error")
        assert "storyboard.json" in error["text"] and "not valid JSON" in error["text"]
        assert [c.shot_id for c in feed.cards()] == ["shot_01", "shot_02"]
        assert feed.token == token and feed.error == error["text"]
        journal = root / ".storycore" / "journal.jsonl"  # other changes, same broken board
        for n in range(3):
            with journal.open("a") as handle:
                handle.write(json.dumps({"event": "noise", "n": n}) + "\n")
            await asyncio.sleep(0.15)
        await page.quiet(0.4)
        assert page.of("error") == [error]  # one message per problem, not one per event
        good["shots"][1]["title"] = "The harbour at dusk"
        _write_storyboard(root, good)
        board = await page.wait_for(lambda m: m["type"] == "board")
        assert board["order"] == ["shot_01", "shot_02"] and board["total"] == 2
        assert board["token"] != token and board["token"] == feed.token
        card = await page.wait_for(card_of("shot_02"))
        assert card["card"]["title"] == "The harbour at dusk"
        assert feed.error is None
        await page.close()


async def test_reordering_and_adding_shots_sends_the_new_order(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with BoardFeed(root) as feed:
        page = Collector(feed.subscribe())
        board = _storyboard(root)
        extra = json.loads(json.dumps(board["shots"][0]))
        extra.update(shot_id="shot_04", shot_number=4, title="New")
        board["shots"] = [board["shots"][2], board["shots"][0], board["shots"][1], extra]
        _write_storyboard(root, board)
        message = await page.wait_for(lambda m: m["type"] == "board")
        assert message["order"] == ["shot_03", "shot_01", "shot_02", "shot_04"]
        assert message["total"] == 4
        await page.wait_for(card_of("shot_04"))
        assert [c.shot_id for c in feed.cards()] == message["order"]
        await page.close()


async def test_refresh_answers_at_once(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    async with BoardFeed(root) as feed:
        page = Collector(feed.subscribe())
        data = json.loads((root / "project.json").read_text())
        data["shots_index"]["shot_01"]["x_review"] = {"comment": "now", "comment_at": "x"}
        (root / "project.json").write_text(json.dumps(data, indent=2))
        await feed.refresh()  # no waiting for the watch
        assert feed.card("shot_01").comment == "now"  # type: ignore[union-attr]
        await page.wait_for(card_of("shot_01", lambda c: c["comment"] == "now"), within=1)
        await asyncio.sleep(0.5)  # the watch sees the same change: nothing sent twice
        assert len(page.of("card")) == 1
        await page.close()


async def test_a_render_in_another_engine_sends_progress_and_cards(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    async with BoardFeed(root) as feed:
        page = Collector(feed.subscribe())
        options = EmulatorOptions(step_seconds=0.1, preview_method="auto")
        async with Emulator(options) as emu:
            live = LiveStatus(root, None)
            engine = ImageEngine(fast_settings(**{"render.steps": 6}), on_event=live.observe)
            async with live:
                summary = await asyncio.wait_for(
                    engine.render(RenderRequest(root, backends=(emu.url,))), 60
                )
        assert summary.counts["rendered"] == 2
        end = await page.wait_for(lambda m: m["type"] == "progress" and not m["running"])
        assert (end["done"], end["total"], end["panels"]) == (2, 2, {})
        for shot in ("shot_01", "shot_02"):
            card = await page.wait_for(card_of(shot, lambda c: c["active"] is not None))
            assert card["card"]["active"]["path"] and card["card"]["status"] == "rendered"
        running = [m for m in page.of("progress") if m["running"]]
        assert running, "no progress message while the render ran"
        panels = [p for m in running for p in m["panels"].values()]
        assert any(p["state"] == "running" and p["fraction"] > 0 for p in panels)
        assert any(p["preview"] for p in panels)
        # A page that opens now gets no stale progress; the snapshot says the run ended.
        assert feed.progress["running"] is False
        await page.close()


async def test_a_mock_render_updates_every_card(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    async with BoardFeed(root) as feed:
        page = Collector(feed.subscribe())
        live = LiveStatus(root, None)
        engine = ImageEngine(fast_settings(), on_event=live.observe)
        async with live:
            summary = await asyncio.wait_for(engine.render(RenderRequest(root, mock=True)), 60)
        assert summary.counts["rendered"] + summary.counts["placeholder"] == 3
        for shot in ("shot_01", "shot_02", "shot_03"):
            await page.wait_for(card_of(shot, lambda c: len(c["takes"]) == 1))
        await page.wait_for(lambda m: m["type"] == "progress" and m["done"] == 3)
        assert all(c.active is not None for c in feed.cards())
        await page.close()


async def test_a_slow_page_loses_old_progress_and_is_told_to_resync(tmp_path: Path) -> None:
    root = make_project(tmp_path, 12)
    async with BoardFeed(root, queue_limit=8) as feed:
        slow = feed.subscribe()  # never read until the end
        state = root / ".storycore"
        for n in range(4):  # four runs' worth of progress: only the newest kept
            (state / "live.json").write_text(json.dumps({"running": False, "done": n}))
            await wait_until(lambda n=n: feed.progress["done"] == n)
        assert slow.pending() == 1
        for round_ in range(4):  # 3 cards each time: past the bound of 8
            data = json.loads((root / "project.json").read_text())
            for k in range(3):
                shot = f"shot_{round_ * 3 + k + 1:02d}"
                entry = data["shots_index"].setdefault(shot, {})
                entry["x_review"] = {"comment": f"c{round_}", "comment_at": ""}
            before = feed.reloads
            (root / "project.json").write_text(json.dumps(data))
            await wait_until(lambda before=before: feed.reloads > before)
        assert slow.pending() <= 8 and slow.resyncs >= 1
        first = await asyncio.wait_for(slow.__anext__(), 1)
        assert first == {"type": "resync", "total": 12, "token": feed.token}
        rest = [await asyncio.wait_for(slow.__anext__(), 1) for _ in range(slow.pending())]
        assert all(m["type"] in ("card", "progress") for m in rest)
        assert sum(m["type"] == "progress" for m in rest) <= 1
        slow.close()


async def test_closing_ends_waiting_pages_at_once_and_idles_without_work(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    feed = BoardFeed(root)
    await feed.__aenter__()
    pages = [Collector(feed.subscribe()) for _ in range(5)]
    cpu, reloads = time.process_time(), feed.reloads
    await asyncio.sleep(1.0)
    assert feed.reloads == reloads  # nothing changed: nothing reloaded, nothing sent
    assert time.process_time() - cpu < 0.3  # no busy loop
    started = time.monotonic()
    await asyncio.wait_for(feed.__aexit__(None, None, None), 5)
    await asyncio.wait_for(asyncio.gather(*(p.task for p in pages)), 2)
    assert time.monotonic() - started < 2.0
    assert all(p.messages == [] for p in pages)
    late = feed.subscribe()  # after the end: ends at once
    assert [m async for m in late] == []


async def test_a_state_folder_that_leads_out_is_not_watched_nor_made(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / ".storycore").symlink_to(elsewhere)
    (elsewhere / "live.json").write_text(json.dumps({"running": True, "pid": 1, "panels": {}}))
    async with BoardFeed(root) as feed:
        assert feed.progress["running"] is False  # read through no link that leaves
        page = Collector(feed.subscribe())
        await child_edit(root / "project.json", 'data["shots_index"]["shot_01"]["status"] = "x"')
        await page.wait_for(card_of("shot_01", lambda c: c["status"] == "x"))
        await page.close()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["live.json"]


async def test_a_project_that_does_not_load_is_refused_at_the_start(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    (root / "storyboard.json").write_text("{")
    try:
        async with BoardFeed(root):
            raise AssertionError("the feed started on a broken project")
    except ProjectError as err:
        assert "storyboard.json" in err.paragraph()
