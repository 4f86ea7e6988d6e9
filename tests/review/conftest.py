"""Fixtures for the review tests: a rendered project, a real review server on loopback (in
this process, or ``storycore review`` as a child), and a client that speaks to it as the page
does (CSRF header, JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession

from storycore.project import load_project, save_project
from storycore.review import ReviewServer
from tests.board._project import add_render, copy_example
from tests.engine.conftest import fast_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CSRF = "X-StoryCore-CSRF"


def rendered_project(tmp_path: Path) -> Path:
    """The lighthouse example with real PNG renders: shot_01 has two takes (the second
    active), shot_02 one; the other shots none."""
    project = load_project(copy_example(tmp_path))
    add_render(project, "shot_01", color=(200, 30, 30), seed=11)
    add_render(project, "shot_01", color=(30, 200, 30), seed=12)
    add_render(project, "shot_02", color=(30, 30, 200), seed=21)
    save_project(project)
    return project.root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return rendered_project(tmp_path)


def project_json(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "project.json").read_text("utf-8"))
    return data


def records_of(root: Path, shot_id: str) -> list[dict[str, Any]]:
    items = project_json(root)["asset_manifest"]["generated_images"]
    return [r for r in items if r.get("shot_id") == shot_id]


@dataclass
class Page:
    """A client that talks to the review server like the page does."""

    session: ClientSession
    url: str  # base, ending in "/"
    csrf: str = ""

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        return await self.session.get(self.url + path.lstrip("/"), **kwargs)

    async def json(self, path: str) -> Any:
        async with await self.get(path) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> ClientResponse:
        headers = {CSRF: self.csrf, **kwargs.pop("headers", {})}
        return await self.session.post(
            self.url + path.lstrip("/"), json=body or {}, headers=headers, **kwargs
        )

    async def act(self, path: str, body: Any = None, status: int = 200) -> Any:
        async with await self.post(path, body) as answer:
            text = await answer.text()
            assert answer.status == status, text
            return json.loads(text)


@contextlib.asynccontextmanager
async def review_server(root: Path, **kwargs: Any) -> AsyncIterator[tuple[ReviewServer, Page]]:
    """A real :class:`ReviewServer` on a free loopback port, and a page client for it."""
    settings = kwargs.pop("settings", None) or fast_settings()
    server = ReviewServer(root, settings, port=0, **kwargs)
    async with server, ClientSession() as session:
        page = Page(session, f"http://127.0.0.1:{server.policy.port}/")
        headers = {"Authorization": f"Bearer {server.policy.token}"} if server.policy.token else {}
        async with session.get(page.url + "api/meta", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            page.csrf = (await answer.json())["csrf"]
        yield server, page


async def wait_idle(page: Page, seconds: float = 60.0) -> dict[str, Any]:
    """Poll ``/api/meta`` (bounded) until no render of the page runs; its ``render``."""
    async with asyncio.timeout(seconds):
        while True:
            meta = await page.json("api/meta")
            if meta["render"]["state"] == "idle":
                return dict(meta["render"])
            await asyncio.sleep(0.1)


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    url: str  # the printed page URL
    base: str  # http://127.0.0.1:PORT/

    async def interrupt(self, seconds: float = 15.0) -> tuple[int, str]:
        """SIGINT, then wait (bounded) for the exit; (exit code, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stderr is not None
        async with asyncio.timeout(seconds):
            err = await self.proc.stderr.read()
            await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode(errors="replace")


@contextlib.asynccontextmanager
async def review_child(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Child]:
    """``storycore review ARGS --no-open`` as a real child; yields once its first stdout line
    (the page's URL) arrived (bounded); killed at the end if still running."""
    from urllib.parse import urlsplit

    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storycore",
        "review",
        "--no-open",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        if not line.startswith("Review page: "):
            rest = await proc.stderr.read()
            raise AssertionError(f"no URL line: {line!r}\n{rest.decode(errors='replace')}")
        url = line.removeprefix("Review page: ").strip()
        port = urlsplit(url).port
        yield Child(proc, url, f"http://127.0.0.1:{port}/")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
