"""The client's own bounds, against inline servers on loopback: downloads streamed to disk
inside the project, uploads of what a received project points at, health probes, history.

The CLI-level attacks are in the other ``test_hostile_http_*`` files; these pin what the engine
and the manager rely on when they call the client directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest
from aiohttp import web

from storycore.comfyui import ClientLimits, ClientTimeouts, ComfyUIClient
from storycore.comfyui.health import probe_system_stats
from storycore.errors import AssetError, OutsideProjectError, ServerResponseError
from tests.security._support import serve
from tests.security.test_hostile_http import png_stream, streaming

FAST = ClientTimeouts(connect=2, read=5, request_deadline=20)
REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _view_app(parts: dict[str, Iterable[bytes]], sent: list[int]) -> web.Application:
    async def view(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        try:
            for part in parts[request.query["filename"]]:
                await response.write(part)
                sent.append(len(part))
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/view", view)
    return app


async def test_a_download_never_leaves_the_containment_root(tmp_path: Path) -> None:
    """The shot folder the engine gives is a link planted in the project, leading out."""
    project, outside = tmp_path / "project", tmp_path / "home"
    (project / "assets").mkdir(parents=True)
    outside.mkdir()
    (project / "assets" / "shot_01").symlink_to(outside)
    png = b"".join(png_stream(8, 8))
    async with serve(_view_app({"a.png": [png]}, [])) as url, ComfyUIClient(url, FAST) as client:
        with pytest.raises(OutsideProjectError, match="link"):
            await client.download(
                {"filename": "a.png"}, project / "assets" / "shot_01", inside=project
            )
        got = await client.download(
            {"filename": "a.png"}, project / "assets" / "shot_02", inside=project, name="x.png"
        )
    assert list(outside.iterdir()) == []
    assert got.path == project / "assets" / "shot_02" / "x.png"
    assert (got.width, got.height, got.format) == (8, 8, "PNG")
    assert got.sha256 == hashlib.sha256(png).hexdigest()


async def test_a_download_past_the_limit_or_with_a_bomb_header_is_cut_off(tmp_path: Path) -> None:
    """Refused while it streams: nothing is kept, no ``.part`` stays, and the server could
    send only a little of what it meant to."""
    sent: list[int] = []
    parts = {
        "big.png": png_stream(4096, 4096),  # 128 MiB on the wire, made as it is sent
        "bomb.png": png_stream(60_000, 60_000, rows=1),  # 28 GB of rows if read whole
        "bomb2.png": png_stream(60_000, 60_000, rows=1),
        "junk.png": [b"<html>" + b"x" * 100_000],
    }
    limits = ClientLimits(image=8 << 20)
    async with (
        serve(_view_app(parts, sent)) as url,
        ComfyUIClient(url, FAST, limits=limits) as client,
    ):
        with pytest.raises(AssetError, match="larger than 8388608 bytes"):
            await client.download({"filename": "big.png"}, tmp_path)
        assert sum(sent) < 64 << 20
        with pytest.raises(AssetError, match="60000x60000 pixels"):
            await client.download({"filename": "bomb.png"}, tmp_path)
        with pytest.raises(AssetError, match="not an image"):
            await client.download({"filename": "junk.png"}, tmp_path)
        with pytest.raises(AssetError, match="60000x60000 pixels"):
            await client.fetch({"filename": "bomb2.png"})
        assert sum(sent) < 64 << 20
    assert _files(tmp_path) == []


async def test_a_large_image_under_the_limit_streams_to_disk_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A valid 305 MiB PNG (6320 x 6320, 16-bit RGBA, stored), with the limit raised to 1 GiB:
    written, hashed and verified on the way while the downloading process stays under 200 MB
    (it runs in a child to measure its own peak)."""
    async with serve(_view_app({"big.png": png_stream(6320, 6320)}, [])) as url:
        script = textwrap.dedent(
            f"""
            import asyncio, hashlib
            from pathlib import Path
            from storycore.comfyui import ClientLimits, ClientTimeouts, ComfyUIClient

            async def main():
                limits = ClientLimits(image=1 << 30)
                timeouts = ClientTimeouts(request_deadline=100)
                async with ComfyUIClient({url!r}, timeouts, limits=limits) as client:
                    got = await client.download({{"filename": "big.png"}}, Path({str(tmp_path)!r}))
                with open(got.path, "rb") as handle:
                    assert hashlib.file_digest(handle, "sha256").hexdigest() == got.sha256
                print(got.size, got.width, got.height)
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        print(int(line.split()[1]) // 1024)

            asyncio.run(main())
            """
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        async with asyncio.timeout(100):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    size, width, height, peak_mb = (int(v) for v in out.split())
    assert (size > 300 << 20, width, height) == (True, 6320, 6320)
    assert peak_mb < 200, f"peak {peak_mb} MB"


@pytest.mark.parametrize("kind", ["device", "pipe", "too big"])
async def test_an_upload_reads_only_a_regular_image_of_bounded_size(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "ref.png"
    if kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "pipe":
        os.mkfifo(path)
    else:
        path.write_bytes(bytes(2 << 20))
    limits = ClientLimits(image=1 << 20)
    async with ComfyUIClient("http://127.0.0.1:9", FAST, limits=limits) as client:
        async with asyncio.timeout(10):
            with pytest.raises(AssetError, match=r"not a regular file|larger than 1 MiB"):
                await client.upload_image(path)


async def test_a_health_probe_reads_a_bounded_answer() -> None:
    app = web.Application()
    app.router.add_get("/system_stats", streaming(iter([b'{"system": "' + bytes(4 << 20)])))
    async with serve(app) as url:
        result = await probe_system_stats(url, timeout=10)
    assert not result.ok and result.error is not None
    assert "larger than 1 MiB" in result.error


async def test_recent_history_keeps_at_most_the_items_asked_for() -> None:
    entries = {f"p{n}": {"status": {"status_str": "success"}, "outputs": {}} for n in range(500)}

    async def history(request: web.Request) -> web.Response:
        return web.json_response(entries)

    app = web.Application()
    app.router.add_get("/history", history)
    async with serve(app) as url, ComfyUIClient(url, FAST) as client:
        assert len(await client.recent_history(5)) == 5


async def test_an_answer_too_big_for_its_endpoint_names_the_setting() -> None:
    async def queue(request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [], "queue_pending": [], "x": "a" * 5000})

    app = web.Application()
    app.router.add_get("/queue", queue)
    async with serve(app) as url, ComfyUIClient(url, FAST, limits=ClientLimits(queue=1000)) as c:
        with pytest.raises(ServerResponseError, match=r"comfyui\.max_response_mb\.queue"):
            await c.queue()
