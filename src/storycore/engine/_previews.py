"""The latest preview of each running panel: in memory, bounded, and as one JPEG per panel.

A ComfyUI started with ``--preview-method`` other than ``none`` sends a preview image after each
sampler step (comfy_execution/progress.py ``WebUIProgressHandler.update_handler`` @ 1b71f275:
a type-4 frame with ``{node_id, prompt_id, ...}`` to a client that announced
``supports_preview_metadata``, else server.py ``send_image`` @ 002c3fb9: a type-1 frame). The
tracker hands each frame of a followed prompt to :meth:`PreviewStore.offer`; the store keeps
only the newest one per panel (at most :attr:`PreviewLimits.max_bytes` each and
:attr:`PreviewLimits.max_total_bytes` in all), writes it off the event loop, at most once per
:attr:`PreviewLimits.min_interval` per panel, to ``<project>/.storycore/previews/<shot>.jpg``
(atomically; PNG and WebP converted to JPEG with Pillow, after a pixel bound), and emits a
:class:`PanelPreview` each time. The file goes when the panel lands or fails; the folder when
the run ends.

What a server sends is untrusted: a frame that is too big, no image, or too many pixels is
dropped (a debug log line), never a crash and never more than one bounded file per panel.
Shot ids are project data: the file name is made safe (:func:`preview_name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from storycore._fsutil import atomic_write_bytes, ensure_inside, mkdirs_inside, unlink_inside
from storycore.comfyui import PromptTracker
from storycore.comfyui.events import PreviewImage
from storycore.engine._backends import Backend
from storycore.engine._events import (
    EngineEvent,
    EventSink,
    PanelDone,
    PanelFailed,
    PanelPreview,
    PanelSubmitted,
)
from storycore.errors import StoryCoreError

__all__ = [
    "PREVIEW_FOLDER",
    "PreviewLimits",
    "PreviewRejected",
    "PreviewStore",
    "encode_preview_jpeg",
    "preview_name",
]

_log = logging.getLogger("storycore.engine")

MiB = 1 << 20
PREVIEW_FOLDER = Path(".storycore") / "previews"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
)


@dataclass(frozen=True)
class PreviewLimits:
    """Bounds on what previews may cost. ComfyUI's are JPEGs of at most ``--preview-size``
    (default 512) pixels a side, some 80 KB (comfy/cli_args.py @ 03294572)."""

    max_bytes: int = 2 * MiB
    max_total_bytes: int = 16 * MiB
    max_pixels: int = 2048 * 2048
    min_interval: float = 0.5
    close_wait: float = 5.0


class PreviewRejected(ValueError):
    """A preview that is no image, or too big to keep."""


def preview_name(shot_id: str) -> str:
    """A file name for ``shot_id``'s preview: the id itself when it is plain
    (``[A-Za-z0-9_.-]``, no leading dot, at most 80 characters, no device name), else the
    cleaned id and a hash of the real one, so two ids never share a file."""
    cleaned = _UNSAFE.sub("_", shot_id).lstrip(".")[:80]
    plain = cleaned == shot_id and cleaned and cleaned.split(".")[0].upper() not in _RESERVED
    if plain:
        return f"{cleaned}.jpg"
    digest = hashlib.sha256(shot_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned or 'shot'}-{digest}.jpg"


def encode_preview_jpeg(data: bytes, limits: PreviewLimits) -> tuple[bytes, int, int]:
    """``data`` (a JPEG, PNG or WebP) as JPEG bytes, with its width and height. A JPEG is kept
    as it is once it decoded whole; anything else is converted. Raises :class:`PreviewRejected`
    for what is no such image, has more than ``max_pixels`` pixels (checked before decoding:
    a PNG bomb is never inflated) or would be bigger than ``max_bytes``. Blocking: call it in a
    worker thread."""
    from PIL import Image

    if len(data) > limits.max_bytes:
        raise PreviewRejected(f"{len(data)} bytes, more than {limits.max_bytes}")
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "WEBP")) as img:
            width, height = img.size
            if width <= 0 or height <= 0 or width * height > limits.max_pixels:
                raise PreviewRejected(
                    f"{width}x{height} pixels, more than {limits.max_pixels} in all"
                )
            img.load()
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                return data, width, height
            rgb = img.convert("RGB")
    except PreviewRejected:
        raise
    except Exception as exc:  # Pillow's many ways of saying "not an image I can read"
        raise PreviewRejected(f"not a readable JPEG, PNG or WebP image ({exc})") from None
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85)
    encoded = out.getvalue()
    if len(encoded) > limits.max_bytes:
        raise PreviewRejected(f"{len(encoded)} bytes as JPEG, more than {limits.max_bytes}")
    return encoded, width, height


@dataclass
class _Panel:
    shot_id: str
    prompt_id: str
    tracker: PromptTracker
    lock: asyncio.Lock
    stop: asyncio.Event
    pending: tuple[bytes, int | None, int | None] | None = None
    last_write: float = float("-inf")
    written: int = 0
    task: asyncio.Task[None] | None = None
    finished: bool = False


class PreviewStore:
    """Previews of the running panels of one render. ``observe`` is the engine's event sink
    (it follows ``PanelSubmitted`` / ``PanelDone`` / ``PanelFailed``, then passes every event
    on to ``sink``); ``backends()`` lists the servers, to find the tracker of a prompt."""

    def __init__(
        self,
        root: Path,
        sink: EventSink | None,
        backends: Callable[[], Iterable[Backend]],
        limits: PreviewLimits | None = None,
    ) -> None:
        self.root = Path(root)
        self.folder = self.root / PREVIEW_FOLDER
        self.sink = sink
        self.limits = limits or PreviewLimits()
        self._backends = backends
        self._panels: dict[str, _Panel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._disabled: str | None = None  # why no preview is written (the folder leads out)
        self.dropped = 0

    # ------------------------------------------------------------------ engine side
    def observe(self, event: EngineEvent) -> None:
        """Track which panel runs which prompt, then pass ``event`` on."""
        if isinstance(event, PanelSubmitted):
            self._watch(event.shot_id, event.backend, event.prompt_id)
        elif isinstance(event, PanelDone | PanelFailed):
            self.finish(event.shot_id)
        if self.sink is not None:
            self.sink(event)

    def _watch(self, shot_id: str, backend_url: str, prompt_id: str) -> None:
        self.finish(shot_id)  # an earlier attempt's preview is stale
        if self._closed:
            return
        tracker = next((b.tracker for b in self._backends() if b.url == backend_url), None)
        if tracker is None:
            return
        panel = _Panel(shot_id, prompt_id, tracker, asyncio.Lock(), asyncio.Event())
        self._panels[shot_id] = panel

        def listener(preview: PreviewImage, step: int | None, steps: int | None) -> None:
            if self._panels.get(shot_id) is panel:
                self.offer(shot_id, preview.image, step, steps)

        tracker.on_preview(prompt_id, listener)

    def offer(self, shot_id: str, image: bytes, step: int | None, steps: int | None) -> None:
        """Keep ``image`` as the newest preview of a running panel (replacing the one not yet
        written) and see that it is written soon. Call it on the event loop."""
        panel = self._panels.get(shot_id)
        if panel is None or panel.finished or self._closed or self._disabled:
            return
        held = sum(len(p.pending[0]) for p in self._panels.values() if p.pending is not None)
        if panel.pending is not None:
            held -= len(panel.pending[0])
        if len(image) > self.limits.max_bytes or held + len(image) > self.limits.max_total_bytes:
            self._drop(shot_id, f"{len(image)} bytes, past the preview budget")
            return
        panel.pending = (image, step, steps)
        if panel.task is None or panel.task.done():
            panel.task = self._spawn(self._writer(panel))

    def finish(self, shot_id: str) -> None:
        """The panel landed or failed: forget its preview and remove its file."""
        panel = self._panels.pop(shot_id, None)
        if panel is None:
            return
        panel.finished = True
        panel.pending = None
        panel.stop.set()  # a writer waiting out its interval ends now
        panel.tracker.on_preview(panel.prompt_id, None)
        if panel.task is not None:  # a file was written, or is being written now
            self._spawn(self._remove(panel))

    # ------------------------------------------------------------------ writing
    def path_for(self, shot_id: str) -> Path:
        return self.folder / preview_name(shot_id)

    async def _writer(self, panel: _Panel) -> None:
        while True:
            wait = panel.last_write + self.limits.min_interval - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await panel.stop.wait()
            async with panel.lock:
                if panel.finished or self._closed or panel.pending is None:
                    return
                image, step, steps = panel.pending
                panel.pending = None
                panel.last_write = time.monotonic()
                path = self.path_for(panel.shot_id)
                try:
                    width, height = await asyncio.to_thread(self._write, path, image)
                except PreviewRejected as why:
                    self._drop(panel.shot_id, str(why))
                    continue
                except (OSError, StoryCoreError) as exc:
                    self._disable(exc)
                    return
                panel.written += 1
                count = panel.written
            if self.sink is not None and not panel.finished:
                relative = path.relative_to(self.root).as_posix()
                self.sink(PanelPreview(panel.shot_id, relative, step, steps, width, height, count))

    def _write(self, path: Path, image: bytes) -> tuple[int, int]:
        jpeg, width, height = encode_preview_jpeg(image, self.limits)
        mkdirs_inside(self.root, self.folder, what="preview folder")
        atomic_write_bytes(path, jpeg, durable=False, inside=self.root)
        return width, height

    async def _remove(self, panel: _Panel) -> None:
        async with panel.lock:  # after a write in flight, never before it
            path = self.path_for(panel.shot_id)
            with contextlib.suppress(OSError, StoryCoreError):
                await asyncio.to_thread(unlink_inside, self.root, path, what="preview")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _drop(self, shot_id: str, why: str) -> None:
        self.dropped += 1
        _log.debug("preview of %s dropped: %s", shot_id, why)

    def _disable(self, exc: BaseException) -> None:
        if self._disabled is None:
            self._disabled = str(exc)
            _log.warning("panel previews are not written: %s", exc)

    # ------------------------------------------------------------------ the end of the run
    async def __aenter__(self) -> PreviewStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop taking previews, let writes in flight end (bounded), remove the folder."""
        self._closed = True
        for shot_id in list(self._panels):
            self.finish(shot_id)
        tasks = set(self._tasks)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self.limits.close_wait)
            for task in late:
                task.cancel()
        with contextlib.suppress(OSError, StoryCoreError):
            await asyncio.to_thread(_clear_folder, self.root, self.folder)


def _clear_folder(root: Path, folder: Path) -> None:
    """Remove the preview files (plain files and links, never what a link leads to), then the
    folder if it is empty. A folder that is a link, or leads out of the project, is left."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    ensure_inside(root, folder, what="preview folder")
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):
        folder.rmdir()
