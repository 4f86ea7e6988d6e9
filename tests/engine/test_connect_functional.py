"""Which server a command uses, and what it says when none answers (issue 14, section 2).

Real loopback servers only: a closed port ("down"), an inline aiohttp app answering a 404 HTML
page ("not ComfyUI"), a socket that accepts and never answers, the emulator as a real ComfyUI
(also on ComfyUI Desktop's port 8000 when that port is free), and the CLI as a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from storycore.comfyui.install import DESKTOP_PORT
from storycore.config import resolve_settings
from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, Notice, RenderRequest, desktop_port_for
from storycore.errors import NoServerReachable
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import Recorder, fast_settings, make_project, run_cli

FAST_ENV = {
    "STORYCORE_RENDER__STEPS": "3",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
    "STORYCORE_COMFYUI__HEALTH_CHECK_TIMEOUT": "2",
}
NOT_COMFYUI = (
    "HTTP 404 from /system_stats: this is not a ComfyUI server (check the URL and its path prefix)"
)
LIBRARY_WORDS = ("Traceback", "<html", "ClientConnectorError", "aiohttp", "Errno")


def closed_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def not_comfyui() -> AsyncIterator[str]:
    """A web server that is not ComfyUI: every path is a 404 HTML page."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(
            status=404,
            text="<html><body><h1>Not Found</h1></body></html>",
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_cli(*args, env={**FAST_ENV, **(env or {})})


def no_library_words(text: str) -> None:
    for word in LIBRARY_WORDS:
        assert word not in text, f"{word!r} shown to the user:\n{text}"


# -- a server the user named is never replaced by placeholders ---------------------------------


async def test_a_named_server_that_is_down_stops_the_run_with_exit_4(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    down = closed_url()
    code, out, err = await cli("generate-images", "-p", str(root), "--backend", down)
    assert code == 4, err
    assert f"{down}: nothing answers (connection refused)" in err
    assert "--fallback mock" in err  # how to ask for placeholders on purpose
    no_library_words(out + err)
    assert records(load_project(root)) == []  # not one placeholder written


async def test_a_named_server_that_is_not_comfyui_is_named_as_such(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    async with not_comfyui() as url:
        code, out, err = await cli("generate-images", "-p", str(root), "--backend", url)
        pre_code, pre_out, pre_err = await cli("preflight", "-p", str(root), "--backend", url)
    assert code == 4, err
    assert f"{url}: {NOT_COMFYUI}" in err
    no_library_words(out + err)
    assert pre_code == 4, pre_err
    assert f"{url}: {NOT_COMFYUI}" in pre_err
    no_library_words(pre_out + pre_err)
    assert records(load_project(root)) == []


async def test_each_url_tried_gets_its_own_line_and_reason(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    down = closed_url()
    async with not_comfyui() as wrong, silent_server() as silent:
        code, out, err = await cli(
            "generate-images",
            "-p",
            str(root),
            "--backend",
            down,
            "--backend",
            wrong,
            "--backend",
            silent,
            "--backend",
            "http://no-such-host.invalid:8188",
            "--json",
        )
    assert code == 4, err
    body = json.loads(out.splitlines()[-1])
    assert body["error"] == "NoServerReachable" and body["exit_code"] == 4
    why = {t["url"]: t["why"] for t in body["tried"]}
    assert why[down] == "nothing answers (connection refused)"
    assert why[wrong] == NOT_COMFYUI
    assert why[silent] == "no answer to GET /system_stats within 2 s"
    assert why["http://no-such-host.invalid:8188"] == (
        "the host name no-such-host.invalid is not known (DNS lookup failed)"
    )
    no_library_words(out + err)


async def test_configured_backends_are_named_too_and_fallback_must_be_asked(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, 2)
    down = closed_url()
    # servers come from the user's settings (a project's storycore.toml may not name them)
    config = tmp_path / "mine.toml"
    config.write_text(f'[[backends]]\nurl = "{down}"\n', encoding="utf-8")
    mine = ("--config", str(config))
    code, _, err = await cli("generate-images", "-p", str(root), *mine)
    assert code == 4, err
    assert f"{down}: nothing answers (connection refused)" in err

    # asked on the command line: placeholders, and exit 9 says so
    code, _, err = await cli("generate-images", "-p", str(root), "--fallback", "mock", *mine)
    assert code == 9, err
    assert "PLACEHOLDER" in err and f"{down}: nothing answers (connection refused)" in err

    # render.fallback = "mock" written in a settings file is asking for it as well
    (root / "storycore.toml").write_text('[render]\nfallback = "mock"\n', encoding="utf-8")
    code, _, err = await cli("generate-images", "-p", str(root), "--force", *mine)
    assert code == 9, err


async def test_mock_fallback_stays_the_default_when_nothing_was_named(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    port = closed_url().rsplit(":", 1)[1]
    env = {"STORYCORE_COMFYUI__PORT": port}  # nothing there, and no install to start
    code, _, err = await cli("generate-images", "-p", str(root), env=env)
    assert code == 9, err
    assert "NO COMFYUI SERVER IS REACHABLE" in err
    assert f"http://127.0.0.1:{port}: nothing answers (connection refused)" in err

    code, _, err = await cli("generate-images", "-p", str(root), "--fallback", "fail", env=env)
    assert code == 4, err
    assert f"http://127.0.0.1:{port}: nothing answers (connection refused)" in err
    no_library_words(err)


async def test_engine_refuses_placeholders_for_a_named_server(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    down = closed_url()
    settings = fast_settings(**{"render.fallback": "mock"})  # the default, even when written
    with pytest.raises(NoServerReachable) as info:
        await ImageEngine(settings).render(RenderRequest(root, backends=(down,)))
    assert info.value.exit_code == 4
    assert list(info.value.tried) == [(down, "nothing answers (connection refused)")]
    summary = await ImageEngine(settings).render(
        RenderRequest(root, backends=(down,), fallback="mock")
    )
    assert summary.mock and summary.exit_code == 9


async def test_verbose_logs_each_connection_attempt_with_its_url(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    down = closed_url()
    code, _, err = await cli("generate-images", "-p", str(root), "--backend", down, "-v")
    assert code == 4, err
    assert f"DEBUG storycore.engine: connecting to {down}" in err
    assert f"DEBUG storycore.comfyui.client: probe of {down} failed: nothing answers" in err
    code, _, err = await cli("generate-images", "-p", str(root), "--backend", down)
    assert "DEBUG" not in err


# -- ComfyUI Desktop's port ---------------------------------------------------------------------


def test_desktop_port_only_when_the_user_chose_no_server() -> None:
    def port_for(cli: dict[str, object] | None = None, urls: tuple[str, ...] = ()) -> int | None:
        resolved = resolve_settings(env={}, read_user_config=False, cli=cli)
        return desktop_port_for(resolved, urls)

    assert DESKTOP_PORT == 8000
    assert port_for() == DESKTOP_PORT
    assert port_for({"comfyui.port": 8190}) is None
    assert port_for({"comfyui.port": 8188}) is None  # written, even if it is the default value
    assert port_for({"comfyui.install_path": "/opt/ComfyUI"}) is None
    assert port_for(urls=("http://127.0.0.1:8188",)) is None
    assert port_for({"backends": ["http://gpu-box:8188"]}) is None


async def test_engine_uses_desktop_when_the_default_port_does_not_answer(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    down = closed_url()
    settings = fast_settings(**{"comfyui.port": int(down.rsplit(":", 1)[1])})
    recorder = Recorder()
    async with Emulator(EmulatorOptions(step_seconds=0.01)) as desktop:
        summary = await ImageEngine(settings, on_event=recorder).render(
            RenderRequest(root, desktop_port=desktop.port)
        )
        assert len(desktop.executed_prompt_ids) == 2
    assert summary.exit_code == 0 and not summary.mock
    assert summary.backends == [desktop.url]
    notices = [n.text for n in recorder.of(Notice)]
    assert any(f"using ComfyUI Desktop at {desktop.url}" in n for n in notices), notices


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_cli_finds_comfyui_desktop_on_port_8000(tmp_path: Path) -> None:
    if not _port_free(DESKTOP_PORT):
        pytest.skip(f"port {DESKTOP_PORT} is in use here: cannot play ComfyUI Desktop")
    if not _port_free(8188):
        pytest.skip("something listens on 8188, the default comfyui.port")
    root = make_project(tmp_path, 1)
    desktop_url = f"http://127.0.0.1:{DESKTOP_PORT}"
    async with Emulator(EmulatorOptions(step_seconds=0.01), port=DESKTOP_PORT) as desktop:
        code, out, err = await cli("generate-images", "-p", str(root))
        assert code == 0, err
        assert f"using ComfyUI Desktop at {desktop_url}" in err
        assert len(desktop.executed_prompt_ids) == 1

        code, out, err = await cli("preflight", "-p", str(root))
        assert code == 0, err
        assert f"using ComfyUI Desktop at {desktop_url}" in err and desktop_url in out

        code, out, err = await cli("doctor", "--json")
        assert code != 4, err
        server = json.loads(out)["server"]
        assert server["url"] == desktop_url and server["desktop"] is True
        assert server["tried"][0]["url"] == "http://127.0.0.1:8188"

        code, out, err = await cli("comfyui", "status")
        assert code == 0, err
        assert f"ComfyUI Desktop 0.3.64 is running at {desktop_url}" in out

        code, out, err = await cli("comfyui", "start", "--json")
        assert code == 0, err
        started = json.loads(out.splitlines()[-1])
        assert started["action"] == "desktop" and started["managed"] is False

        # A port the user chose is used as it is: Desktop is not looked for.
        env = {"STORYCORE_COMFYUI__PORT": "8188"}
        code, out, err = await cli("comfyui", "status", env=env)
        assert code == 3, err
        code, _, err = await cli("generate-images", "-p", str(root), "--force", env=env)
        assert code == 9, err  # nothing named, nothing answers there: placeholders, said so
        assert "ComfyUI Desktop" not in err
        assert len(desktop.executed_prompt_ids) == 1


# -- doctor and status say what answers ---------------------------------------------------------


async def test_doctor_and_status_name_the_emulator_and_not_comfyui(tmp_path: Path) -> None:
    async with Emulator(EmulatorOptions(mark_placeholders=True)) as emu:
        port = str(emu.port)
        code, out, err = await cli("comfyui", "status", "--port", port)
        assert code == 0, err
        assert f"StoryCore's emulator (placeholders) is running at {emu.url}" in out
        code, out, err = await cli("doctor", "--backend", emu.url)
        assert code != 4, err
        assert "StoryCore's emulator (placeholders)" in out
    async with not_comfyui() as url:
        code, out, err = await cli("doctor", "--url", url)  # the hidden, older name
    assert code == 4, err
    assert f"{url}: {NOT_COMFYUI}" in out
    no_library_words(out + err)
