"""``storycore review`` as a user runs it: a real child process, its URL line, Ctrl-C, an
occupied port, a non-loopback bind with its token, a folder that is not a project."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from aiohttp import ClientSession

from tests.review.conftest import review_child
from tests.security._support import run_storycore


async def test_serves_then_ctrl_c_exits_0(project: Path) -> None:
    async with review_child("--project", str(project), "--port", "0") as child:
        assert child.url.startswith("http://127.0.0.1:") and "token" not in child.url
        async with ClientSession() as session:
            async with session.get(child.base + "api/meta") as answer:
                assert answer.status == 200
                assert (await answer.json())["total"] == 7
            async with session.get(child.base + "api/board?limit=500") as answer:
                assert len((await answer.json())["cards"]) == 7
        started = time.monotonic()
        code, err = await child.interrupt()
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert "Traceback" not in err


async def test_ctrl_c_with_an_open_event_stream(project: Path) -> None:
    async with (
        review_child("--project", str(project), "--port", "0") as child,
        ClientSession() as session,
        session.get(child.base + "api/events") as stream,
    ):
        assert (await stream.content.readline()).startswith(b"retry:")
        started = time.monotonic()
        code, err = await child.interrupt()
        assert code == 0, err
        assert time.monotonic() - started < 10


async def test_an_occupied_port_is_one_paragraph_and_exit_2(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = await run_storycore(
            "review", "--project", str(project), "--port", str(port), "--no-open", limit_s=30
        )
    assert result.rc == 2, result.output
    assert "already in use" in result.stderr and str(port) in result.stderr
    assert "--port 0" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already in use" in errors[0], result.stderr  # one paragraph
    assert "watcher" not in result.stderr  # refused before the project is watched
    assert "Traceback" not in result.output and result.stdout == ""
    result.assert_bounded(seconds=30)


async def test_non_loopback_bind_prints_the_token(project: Path) -> None:
    args = ("--project", str(project), "--host", "0.0.0.0", "--port", "0")
    async with review_child(*args) as child:
        assert "?token=" in child.url
        token = child.url.rsplit("?token=", 1)[1]
        async with ClientSession() as session:
            async with session.get(child.base + "api/meta") as answer:
                assert answer.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(child.base + "api/meta", headers=headers) as answer:
                assert answer.status == 200
        code, err = await child.interrupt()
        assert code == 0, err
        assert token not in err  # printed once, in the URL on stdout


async def test_not_a_project_is_exit_3(tmp_path: Path) -> None:
    result = await run_storycore(
        "review", "--project", str(tmp_path), "--port", "0", "--no-open", limit_s=30
    )
    assert result.rc == 3, result.output
    assert "project.json" in result.stderr and "Traceback" not in result.output
    assert "Review page" not in result.stdout


FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__GRACEFUL_SHUTDOWN": "5",
}


async def test_ctrl_c_during_a_page_render_stops_it_and_exits_130(project: Path) -> None:
    from storycore.emulator import Emulator, EmulatorOptions
    from storycore.journal import Journal

    async with Emulator(EmulatorOptions(step_seconds=0.2)) as emu:
        args = ("--project", str(project), "--port", "0", "--backend", emu.url)
        async with review_child(*args, env=FAST_ENV) as child, ClientSession() as session:
            async with session.get(child.base + "api/meta") as answer:
                csrf = (await answer.json())["csrf"]
            headers = {"X-StoryCore-CSRF": csrf}
            body = {"shots": [], "new_takes": 1}
            async with session.post(child.base + "api/render", json=body, headers=headers) as a:
                assert a.status == 202, await a.text()
            await asyncio.sleep(1.0)  # panels on the (slow) server
            started = time.monotonic()
            code, err = await child.interrupt(30)
            assert code == 130, err
            assert time.monotonic() - started < 15
            assert "interrupted" in err and "Traceback" not in err
    assert Journal(project).open_prompts() == []  # the running panels finished or were withdrawn
