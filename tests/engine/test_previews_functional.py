"""Panel previews end to end: an emulator started with previews on, the engine keeping each
running panel's latest preview as ``.storycore/previews/<shot>.jpg`` while it renders, and the
store's bounds against what a dishonest server could send."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from storycore.cli._common import Output
from storycore.cli._render_view import RichView
from storycore.comfyui import ComfyUIClient, PromptTracker
from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import (
    ImageEngine,
    PanelDone,
    PanelProgress,
    PanelSubmitted,
    RenderRequest,
)
from storycore.engine._events import PanelFailed, PanelPreview
from storycore.engine._previews import (
    PREVIEW_FOLDER,
    PreviewLimits,
    PreviewStore,
    preview_name,
)
from tests.engine.conftest import Recorder, fast_settings, make_project, run_cli

STEPS = 6


class Watcher:
    """Looks at the preview folder every 10 ms from outside the engine: when each file was
    seen, and whether each sighting was a whole JPEG."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[str, list[float]] = {}
        self.broken: list[str] = []
        self.most_files = 0

    async def run(self) -> None:
        while True:
            names = await asyncio.to_thread(self._look)
            self.most_files = max(self.most_files, len(names))
            await asyncio.sleep(0.01)

    def _look(self) -> list[str]:
        try:
            # The previews themselves; an atomic write's own temporary file (".<name>.<hex>.tmp",
            # storycore._fsutil) is half written by design and never has a preview's name.
            names = sorted(n for n in os.listdir(self.folder) if not n.startswith("."))
        except FileNotFoundError:
            return []
        now = time.monotonic()
        for name in names:
            try:
                data = (self.folder / name).read_bytes()
            except FileNotFoundError:
                continue
            self.seen.setdefault(name, []).append(now)
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    if img.format != "JPEG":
                        self.broken.append(name)
            except Exception:
                self.broken.append(name)
        return names


async def test_previews_while_running_gone_after_landing(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    folder = root / PREVIEW_FOLDER
    watcher = Watcher(folder)
    done_at: dict[str, float] = {}

    def hook(event: Any) -> None:
        if isinstance(event, PanelDone):
            done_at[event.shot_id] = time.monotonic()

    recorder = Recorder(hook)
    options = EmulatorOptions(step_seconds=0.12, preview_method="auto")
    async with Emulator(options) as emu:
        watching = asyncio.create_task(watcher.run())
        try:
            engine = ImageEngine(fast_settings(**{"render.steps": STEPS}), on_event=recorder)
            summary = await engine.render(RenderRequest(root, backends=(emu.url,)))
        finally:
            watching.cancel()
    assert summary.counts["rendered"] == 2, summary.to_dict()

    previews = recorder.of(PanelPreview)
    for shot in ("shot_01", "shot_02"):
        mine = [p for p in previews if p.shot_id == shot]
        assert mine, f"no preview event for {shot}"
        assert {p.path for p in mine} == {f".storycore/previews/{shot}.jpg"}
        assert all(p.steps == STEPS and p.step is not None and 1 <= p.step <= STEPS for p in mine)
        assert all(p.width > 0 and p.height > 0 for p in mine)
        assert [p.count for p in mine] == list(range(1, len(mine) + 1))
        # Throttled: STEPS previews came 0.12 s apart, at most one write per 0.5 s is kept.
        assert len(mine) <= 1 + (STEPS * 0.12) / 0.5 + 1
        # The watcher saw the file while the panel ran, and never after it landed (+ slack).
        sightings = watcher.seen.get(f"{shot}.jpg", [])
        assert sightings, f"the preview file of {shot} was never seen while it ran"
        assert max(sightings) < done_at[shot] + 0.3
        # Every preview event of a panel came before its PanelDone.
        done = next(e for e in recorder.of(PanelDone) if e.shot_id == shot)
        assert max(recorder.events.index(p) for p in mine) < recorder.events.index(done)
    assert watcher.broken == []  # written atomically: never a half file
    assert watcher.most_files <= 2  # one file per running panel
    assert not folder.exists()  # the folder goes with the run


async def test_no_previews_when_the_server_sends_none(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    recorder = Recorder()
    async with Emulator(EmulatorOptions(step_seconds=0.02, preview_method="none")) as emu:
        engine = ImageEngine(fast_settings(), on_event=recorder)
        summary = await engine.render(RenderRequest(root, backends=(emu.url,)))
    assert summary.counts["rendered"] == 1
    assert recorder.of(PanelPreview) == []
    assert not (root / PREVIEW_FOLDER).exists()


# -- the store's bounds, fed directly (the listener the tracker calls) ---------------------------


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG header and one deflate stream of zeros: a few KB that would inflate
    to width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(raw.compress(row) for _ in range(64)) + raw.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


class Store:
    """A PreviewStore following one 'running' panel on a real (unstarted) tracker."""

    def __init__(self, root: Path, limits: PreviewLimits | None = None) -> None:
        self.client = ComfyUIClient("http://127.0.0.1:9")
        self.tracker = PromptTracker(self.client)
        backend = SimpleNamespace(url="http://127.0.0.1:9", tracker=self.tracker)
        self.recorder = Recorder()
        self.store = PreviewStore(root, self.recorder, lambda: [backend], limits)  # type: ignore[list-item]

    def submit(self, shot_id: str, prompt_id: str = "p1") -> None:
        self.store.observe(PanelSubmitted(shot_id, "http://127.0.0.1:9", prompt_id))

    async def settle(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        await self.store.aclose()
        await self.client.close()


async def test_many_previews_one_kept_and_throttled(tmp_path: Path) -> None:
    limits = PreviewLimits(min_interval=0.3)
    s = Store(tmp_path, limits)
    try:
        s.submit("shot_01")
        images = [_jpeg((n, 255 - n, 0)) for n in range(200)]
        started = time.monotonic()
        for n, image in enumerate(images):
            s.store.offer("shot_01", image, n + 1, 200)
            assert s.store._panels["shot_01"].pending is not None
            held = [p.pending for p in s.store._panels.values() if p.pending is not None]
            assert len(held) <= 1  # one preview per running panel in memory
            await asyncio.sleep(0.002)
        await s.settle(0.8)
        elapsed = time.monotonic() - started
        events = s.recorder.of(PanelPreview)
        assert 1 <= len(events) <= 1 + elapsed / 0.3 + 1, len(events)
        path = tmp_path / PREVIEW_FOLDER / "shot_01.jpg"
        assert path.read_bytes() == images[-1]  # the newest one is what is on disk
        assert events[-1].step == 200 and events[-1].steps == 200
        assert os.listdir(tmp_path / PREVIEW_FOLDER) == ["shot_01.jpg"]

        s.store.observe(PanelDone("shot_01", "x.png", 1.0, False, "b", "p1"))
        await s.settle(0.2)
        assert not path.exists()  # removed when the panel lands
        s.store.offer("shot_01", images[0], 1, 1)  # late frames of a landed panel: ignored
        await s.settle(0.1)
        assert not path.exists()
    finally:
        await s.close()
    assert not (tmp_path / PREVIEW_FOLDER).exists()


async def test_failed_panel_preview_removed_and_png_converted(tmp_path: Path) -> None:
    s = Store(tmp_path)
    try:
        s.submit("shot_01")
        out = io.BytesIO()
        Image.new("RGBA", (32, 32), (0, 0, 255, 128)).save(out, format="PNG")
        s.store.offer("shot_01", out.getvalue(), 2, 4)
        await s.settle()
        path = tmp_path / PREVIEW_FOLDER / "shot_01.jpg"
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (32, 32)
        s.store.observe(PanelFailed("shot_01", "boom", will_retry=True))
        await s.settle(0.2)
        assert not path.exists()
    finally:
        await s.close()


@pytest.mark.parametrize(
    "hostile",
    [
        b"\xff\xd8\xff" + b"\0" * (3 << 20),  # past 2 MiB
        b"this is no image at all" * 10,
        b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\xaa" * 500,  # a JPEG cut to pieces
        _png_bomb(30000, 30000),  # 900 megapixels declared
        _png_bomb(4000, 4000),  # 16 megapixels: past the preview bound, still never decoded
    ],
    ids=["huge", "not-an-image", "broken-jpeg", "png-bomb", "too-many-pixels"],
)
async def test_hostile_previews_write_nothing(tmp_path: Path, hostile: bytes) -> None:
    s = Store(tmp_path)
    try:
        s.submit("shot_01")
        started = time.monotonic()
        s.store.offer("shot_01", hostile, 1, 2)
        await s.settle()
        assert time.monotonic() - started < 2.0  # nothing was inflated
        assert s.recorder.of(PanelPreview) == []
        assert not (tmp_path / PREVIEW_FOLDER / "shot_01.jpg").exists()
        assert s.store.dropped == 1
        s.store.offer("shot_01", _jpeg((1, 2, 3)), 2, 2)  # the next good one still lands
        await s.settle(0.7)
        assert len(s.recorder.of(PanelPreview)) == 1
    finally:
        await s.close()


async def test_total_bytes_bounded_across_panels(tmp_path: Path) -> None:
    limits = PreviewLimits(max_bytes=200_000, max_total_bytes=250_000, min_interval=5.0)
    s = Store(tmp_path, limits)
    try:
        big = _jpeg((9, 9, 9)) + b"\0" * 150_000  # trailing bytes after the JPEG
        for n in range(3):
            s.submit(f"shot_{n}", prompt_id=f"p{n}")
        for n in range(3):  # the first of each is written at once; hold the second
            s.store.offer(f"shot_{n}", _jpeg((n, n, n)), 1, 2)
        await s.settle(0.3)
        for n in range(3):
            s.store.offer(f"shot_{n}", big, 2, 2)
        held = sum(len(p.pending[0]) for p in s.store._panels.values() if p.pending)
        assert held <= limits.max_total_bytes
        assert s.store.dropped >= 1
    finally:
        await s.close()


async def test_shot_ids_become_safe_file_names(tmp_path: Path) -> None:
    hostile = ["../../outside", "/etc/passwd", "a/b", "a_b", "..", "CON", "x" * 300, "é t"]
    names = [preview_name(shot) for shot in hostile]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert name.endswith(".jpg") and len(name) <= 100
    assert preview_name("shot_01") == "shot_01.jpg"
    s = Store(tmp_path / "project")
    (tmp_path / "project").mkdir()
    try:
        s.submit("../../outside")
        s.store.offer("../../outside", _jpeg((5, 5, 5)), 1, 1)
        await s.settle()
        files = os.listdir(tmp_path / "project" / PREVIEW_FOLDER)
        assert files == [preview_name("../../outside")]
        assert sorted(os.listdir(tmp_path)) == ["project"]
    finally:
        await s.close()


async def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    root, outside = tmp_path / "project", tmp_path / "outside"
    (root / ".storycore").mkdir(parents=True)
    outside.mkdir()
    (root / PREVIEW_FOLDER).symlink_to(outside, target_is_directory=True)
    s = Store(root)
    try:
        s.submit("shot_01")
        s.store.offer("shot_01", _jpeg((5, 5, 5)), 1, 1)
        await s.settle()
        assert os.listdir(outside) == []
        assert s.recorder.of(PanelPreview) == []
    finally:
        await s.close()
    assert (root / PREVIEW_FOLDER).is_symlink() and os.listdir(outside) == []


# -- what the person watching sees -------------------------------------------------------------

CLI_ENV = {
    "STORYCORE_RENDER__STEPS": "6",
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "128",
    "STORYCORE_COMFYUI__HEALTH_CHECK_INTERVAL": "0.2",
}


async def test_the_terminal_says_preview_ready_once_and_json_has_each(tmp_path: Path) -> None:
    root = make_project(tmp_path, 2)
    async with Emulator(EmulatorOptions(step_seconds=0.1, preview_method="auto")) as emu:
        code, out, err = await run_cli(
            "generate-images", "-p", str(root), "--backend", emu.url, env=CLI_ENV
        )
        assert code == 0, err
        assert err.count("preview ready") == 1, err  # one line, not one per frame
        assert ".storycore/previews/shot_01.jpg" in err
        code, out, err = await run_cli(
            "generate-images",
            "-p",
            str(root),
            "--backend",
            emu.url,
            "--force",
            "--json",
            env=CLI_ENV,
        )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    previews = [line for line in lines if line.get("event") == "panel_preview"]
    assert {p["shot_id"] for p in previews} == {"shot_01", "shot_02"}
    assert all(p["path"].startswith(".storycore/previews/") and p["steps"] == 6 for p in previews)
    assert not (root / PREVIEW_FOLDER).exists()


def test_the_running_bar_says_preview_ready() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    out = Output(False)
    out.err_console = console
    view = RichView(out)
    view.progress.start()
    view.handle(PanelSubmitted("shot_01", "http://b", "p1"))
    view.handle(PanelProgress("shot_01", 0.2, step=1, steps=4, node_class="KSampler"))
    assert "preview ready" not in view.progress.tasks[-1].description
    for step in (1, 2, 3):
        view.handle(PanelPreview("shot_01", ".storycore/previews/shot_01.jpg", step, 4))
        view.handle(PanelProgress("shot_01", 0.5, step=step + 1, steps=4, node_class="KSampler"))
    assert view.progress.tasks[-1].description.endswith("preview ready[/]")
    view.handle(PanelDone("shot_01", "a.png", 1.0, False, "http://b", "p1"))
    assert view.previewed == set()
    view.close()
    assert console.file.getvalue().count("preview ready") >= 1  # type: ignore[attr-defined]
