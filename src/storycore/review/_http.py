"""The review page's routes: thin handlers over the board feed, the actions and the runner.

Nothing the page sends is a path: images are asked for by asset id (looked up among the
board's takes, whose paths :mod:`._cards` already checked) and previews by panel key (looked
up in ``.storycore/live.json``, and the file must lie in ``.storycore/previews/``). Every
file is read off the event loop, bounded, as a plain file whose real path stays in the
project. Errors are ``{"error": "one paragraph"}`` (see :mod:`._security`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from storycore.errors import ConfigError, OutsideProjectError, ProjectError, StoryCoreError
from storycore.review._runner import MAX_NEW_TAKES, RenderAsk, RenderRunner, RunnerBusy
from storycore.review._security import AccessPolicy, error_response

if TYPE_CHECKING:
    from storycore.review._cards import Card, Take
    from storycore.review._thumbcache import ThumbCache

__all__ = ["BoardSource", "ReviewContext", "add_routes", "read_inside"]

MAX_STREAMS = 64  # open /api/events streams (pages) at once
MAX_MEDIA = 256 * 1024 * 1024
MAX_PREVIEW = 16 * 1024 * 1024
MAX_LIVE = 4 * 1024 * 1024
MAX_LIMIT = 500
MAX_COMMENT = 10_000
LIVE_FILE = Path(".storycore") / "live.json"
PREVIEWS_DIR = Path(".storycore") / "previews"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
IMAGE_TYPES[".webp"] = "image/webp"


class BoardSource(Protocol):
    """What the handlers need of the board feed (:class:`storycore.review._feed.BoardFeed`)."""

    @property
    def token(self) -> str: ...

    def cards(self) -> list[Card]: ...

    async def refresh(self) -> None: ...

    def subscribe(self) -> AsyncIterator[dict[str, Any]]: ...


@dataclass
class ReviewContext:
    """Everything the handlers share (one per server)."""

    root: Path
    policy: AccessPolicy
    feed: BoardSource
    runner: RenderRunner
    thumbs: ThumbCache
    static: dict[str, Path]
    project_id: str
    title: str
    profiles: list[str]
    ping_s: float = 15.0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    streams: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    _takes: tuple[object, dict[str, tuple[Card, Take]]] | None = None

    def find_take(self, asset_id: str) -> tuple[Card, Take] | None:
        """The card and take of ``asset_id`` (an index made once per board snapshot: a page
        asks for 200 thumbnails at a time of a 2000-shot board)."""
        source = getattr(self.feed, "snapshot", None)
        if source is None or self._takes is None or self._takes[0] is not source:
            index = {t.asset_id: (c, t) for c in self.feed.cards() for t in c.takes}
            if source is None:
                return index.get(asset_id)
            self._takes = (source, index)
        return self._takes[1].get(asset_id)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every open event stream (a full stream misses it: the page
        reads the render state again from ``/api/meta`` when it reconnects)."""
        for queue in list(self.streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    def close_streams(self) -> None:
        self.closing.set()
        for queue in list(self.streams):
            with contextlib.suppress(asyncio.QueueFull):  # it sees ``closing`` next
                queue.put_nowait(None)


CONTEXT: web.AppKey[ReviewContext] = web.AppKey("storycore_review", ReviewContext)


def _ctx(request: web.Request) -> ReviewContext:
    return request.app[CONTEXT]


# ---------------------------------------------------------------------- files
def read_inside(root: Path, path: Path, limit: int, *, what: str) -> bytes | None:
    """The bytes of ``path`` when its real path stays in ``root`` and it is a plain file of at
    most ``limit`` bytes; None when it is missing, not a plain file or too big. Blocking."""
    from storycore._fsutil import ensure_inside
    from storycore._statefiles import open_plain_for_reading

    ensure_inside(root, path, what=what)
    handle = open_plain_for_reading(path, follow_link=True)
    if handle is None:
        return None
    with handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def _image_type(name: str) -> str | None:
    return IMAGE_TYPES.get(Path(name).suffix.lower())


def _not_found(text: str) -> web.Response:
    return error_response(404, text)


def _fresh(request: web.Request, etag: str) -> bool:
    return request.headers.get("If-None-Match", "") == etag


# ---------------------------------------------------------------------- pages and data
async def index(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    path = ctx.static.get("index.html")
    if path is None:
        return error_response(500, "the review page (index.html) is missing from this install")
    data = await asyncio.to_thread(read_inside, path.parent, path, MAX_PREVIEW, what="page")
    if data is None:
        return error_response(500, "the review page (index.html) could not be read")
    page = data.decode("utf-8", "replace").replace("{{csrf}}", ctx.policy.csrf)
    return web.Response(
        text=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )


STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
}


async def static(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    name = request.match_info["name"]
    path = ctx.static.get(name)
    if path is None or name == "index.html":
        return _not_found(f"the review page has no file {name[:100]!r}")
    data = await asyncio.to_thread(read_inside, path.parent, path, MAX_PREVIEW, what="page file")
    if data is None:
        return _not_found(f"the review page's file {name!r} could not be read")
    ctype = STATIC_TYPES[path.suffix.lower()]
    charset = "utf-8" if ctype.startswith("text/") or ctype == "application/json" else None
    return web.Response(
        body=data,
        content_type=ctype,
        charset=charset,
        headers={"Cache-Control": "no-cache"},
    )


async def meta(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    render = ctx.runner.message()
    render.pop("type", None)
    return web.json_response(
        {
            "project_id": ctx.project_id,
            "title": ctx.title,
            "total": len(ctx.feed.cards()),
            "token": ctx.feed.token,
            "profiles": ctx.profiles,
            "render": render,
            "csrf": ctx.policy.csrf,
        },
        headers={"Cache-Control": "no-store"},
    )


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"'{name}' must be a whole number from {low} to {high}"}),
            content_type="application/json",
        )
    return value


async def board(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    offset = _int_query(request, "offset", 0, 0, 10**9)
    limit = _int_query(request, "limit", 100, 1, MAX_LIMIT)
    cards = ctx.feed.cards()
    return web.json_response(
        {
            "total": len(cards),
            "offset": offset,
            "token": ctx.feed.token,
            "cards": [card.to_json() for card in cards[offset : offset + limit]],
        },
        headers={"Cache-Control": "no-store"},
    )


async def media(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    asset_id = request.match_info["asset_id"]
    found = ctx.find_take(asset_id)
    if found is None or found[1].path is None:
        return _not_found(f"this project has no image with asset id {asset_id[:100]!r}")
    take = found[1]
    assert take.path is not None
    ctype = _image_type(take.path)
    etag = f'"{take.sha256[:64]}"'
    if ctype is None:
        return _not_found(f"the render {asset_id!r} is not an image the page shows")
    if _fresh(request, etag):
        return web.Response(status=304, headers={"ETag": etag})
    data = await asyncio.to_thread(
        read_inside, ctx.root, ctx.root / take.path, MAX_MEDIA, what="render"
    )
    if data is None:
        return _not_found(f"the image of {asset_id!r} ({take.path}) is missing or unreadable")
    return web.Response(
        body=data, content_type=ctype, headers={"ETag": etag, "Cache-Control": "private, no-cache"}
    )


def _thumbnail(ctx: ReviewContext, shot_id: str, take: Take) -> bytes | None:
    from storycore._fsutil import ensure_inside
    from storycore.manifest import AssetRecord
    from storycore.review._board import BoardPanel
    from storycore.review._thumbcache import Thumbnails

    assert take.path is not None
    image = ensure_inside(ctx.root, ctx.root / take.path, what="render")
    record = AssetRecord(
        asset_id=take.asset_id,
        shot_id=shot_id,
        version=take.version,
        render=take.render,
        path=take.path,
        sha256=take.sha256,
        size=0,
        width=take.width,
        height=take.height,
        placeholder=take.placeholder,
        created_at=take.created_at,
        seed=take.seed,
    )
    panel = BoardPanel(
        shot_id=shot_id,
        shot_number=0,
        title="",
        description="",
        camera="",
        lighting="",
        record=record,
        image=image,
    )
    return Thumbnails(ctx.thumbs).jpeg(panel)


async def thumb(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    asset_id = request.match_info["asset_id"]
    found = ctx.find_take(asset_id)
    if found is None or found[1].path is None:
        return _not_found(f"this project has no image with asset id {asset_id[:100]!r}")
    card, take = found
    etag = f'"t{take.sha256[:64]}"'
    if _fresh(request, etag):
        return web.Response(status=304, headers={"ETag": etag})
    data = await asyncio.to_thread(_thumbnail, ctx, card.shot_id, take)
    if data is None:
        return _not_found(f"the image of {asset_id!r} is missing or unreadable")
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={"ETag": etag, "Cache-Control": "private, no-cache"},
    )


def _preview_bytes(root: Path, key: str) -> bytes | None:
    from storycore._fsutil import is_safe_relative

    raw = read_inside(root, root / LIVE_FILE, MAX_LIVE, what="live status")
    try:
        live = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    panels = live.get("panels") if isinstance(live, dict) else None
    entry = panels.get(key) if isinstance(panels, dict) else None
    name = entry.get("preview") if isinstance(entry, dict) else None
    if not isinstance(name, str) or "\\" in name or not is_safe_relative(name):
        return None
    path = root / name
    if path.parent != root / PREVIEWS_DIR or _image_type(name) is None:
        return None
    return read_inside(root / PREVIEWS_DIR, path, MAX_PREVIEW, what="preview")


async def preview(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    key = request.match_info["key"]
    data = await asyncio.to_thread(_preview_bytes, ctx.root, key)
    if data is None:
        return _not_found(f"no preview of panel {key[:100]!r} right now")
    ctype = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
    return web.Response(body=data, content_type=ctype, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------- events (SSE)
def _sse(message: dict[str, Any]) -> bytes:
    kind = str(message.get("type", "message"))
    kind = re.sub(r"[^A-Za-z0-9_-]", "", kind)[:40] or "message"
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
    # JSON has no raw line breaks; U+2028/2029 are not line breaks to SSE.
    return f"event: {kind}\ndata: {data}\n\n".encode("utf-8", "surrogatepass")


async def _pump(feed: BoardSource, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    """The feed's messages into the stream's queue; ``None`` last (the feed closed)."""
    subscription = feed.subscribe()
    try:
        async for message in subscription:
            await queue.put(message)
    finally:
        close = getattr(subscription, "close", None)
        if callable(close):
            close()
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)


async def events(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    if len(ctx.streams) >= MAX_STREAMS:
        return error_response(503, f"this review server already serves {MAX_STREAMS} pages")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=512)
    ctx.streams.add(queue)
    pump = asyncio.create_task(_pump(ctx.feed, queue), name="review-sse-pump")
    try:
        await response.write(b"retry: 2000\n\n")
        await response.write(_sse(ctx.runner.message()))
        while not ctx.closing.is_set():
            try:
                async with asyncio.timeout(ctx.ping_s):
                    message = await queue.get()
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if message is None:
                break
            await response.write(_sse(message))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        ctx.streams.discard(queue)
        pump.cancel()
        await asyncio.wait({pump}, timeout=1.0)
    return response


# ---------------------------------------------------------------------- actions
def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": text}), content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    # read() stops past the app's client_max_size (MAX_BODY) with a 413, chunked or not
    try:
        raw = await request.read()
    except (ValueError, OSError):
        raise _bad("the request body could not be read") from None
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise _bad("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("the request body must be a JSON object")
    return data


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"the request needs '{name}'")
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _bad(f"'{name}' has the wrong type ({type(value).__name__})")
    return value


def _status_for(exc: StoryCoreError) -> int:
    from storycore import errors

    conflict = getattr(errors, "EditConflict", None)
    if conflict is not None and isinstance(exc, conflict):
        return 409
    if isinstance(exc, OutsideProjectError):
        return 403
    if isinstance(exc, ProjectError | ConfigError):
        return 400
    return 500


def _card(ctx: ReviewContext, shot_id: str) -> Card | None:
    return next((c for c in ctx.feed.cards() if c.shot_id == shot_id), None)


Action = Callable[[Path, str, dict[str, Any]], Any]


async def _act(request: web.Request, action: Action, answer_token: bool = False) -> web.Response:
    ctx = _ctx(request)
    shot_id = request.match_info["shot_id"]
    body = await _json_body(request)
    if _card(ctx, shot_id) is None:
        return _not_found(f"the storyboard has no shot {shot_id[:100]!r}")
    try:
        result = await asyncio.to_thread(action, ctx.root, shot_id, body)
    except web.HTTPException:
        raise
    except StoryCoreError as exc:
        return error_response(_status_for(exc), exc.paragraph())
    await ctx.feed.refresh()
    card = _card(ctx, shot_id)
    out: dict[str, Any] = {"ok": True, "card": card.to_json() if card is not None else None}
    if answer_token:
        out["token"] = result if isinstance(result, str) else ctx.feed.token
    return web.json_response(out)


def _pick(root: Path, shot_id: str, body: dict[str, Any]) -> Any:
    from storycore.review import _actions

    return _actions.pick_take(root, shot_id, _field(body, "asset_id", str, True))


def _approve(root: Path, shot_id: str, body: dict[str, Any]) -> Any:
    from storycore.review import _actions

    which = _field(body, "asset_id", str, False)
    approved = _field(body, "approved", bool, False)
    return _actions.set_approval(root, shot_id, which, True if approved is None else approved)


def _reject(root: Path, shot_id: str, body: dict[str, Any]) -> Any:
    from storycore.review import _actions

    return _actions.reject_take(root, shot_id, _field(body, "asset_id", str, False))


def _comment(root: Path, shot_id: str, body: dict[str, Any]) -> Any:
    from storycore.review import _actions

    text = _field(body, "text", str, True)
    if len(text) > MAX_COMMENT:
        raise _bad(f"a comment is at most {MAX_COMMENT} characters")
    return _actions.set_comment(root, shot_id, text)


def _edit(root: Path, shot_id: str, body: dict[str, Any]) -> Any:
    from storycore.review._edit import edit_shot

    changes = _field(body, "changes", dict, True)
    token = _field(body, "token", str, True)
    return edit_shot(root, shot_id, changes, token)


def _shot_action(action: Action, answer_token: bool = False) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _act(request, action, answer_token)

    return handler


# ---------------------------------------------------------------------- render
async def render(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    body = await _json_body(request)
    shots = _field(body, "shots", list, False) or []
    if len(shots) > 100_000 or not all(isinstance(s, str) for s in shots):
        raise _bad("'shots' must be a list of shot ids")
    known = {c.shot_id for c in ctx.feed.cards()}
    unknown = [s for s in shots if s not in known]
    if unknown:
        return _not_found(f"the storyboard has no shot {', '.join(map(repr, unknown[:5]))}")
    profile = _field(body, "profile", str, False)
    if profile is not None and profile not in ctx.profiles:
        raise _bad(f"no render profile {profile[:100]!r} (profiles: {', '.join(ctx.profiles)})")
    new_takes = _field(body, "new_takes", int, False) or 0
    if not 0 <= new_takes <= MAX_NEW_TAKES:
        raise _bad(f"'new_takes' must be from 0 to {MAX_NEW_TAKES}")
    rejected = bool(_field(body, "rejected", bool, False))
    ask = RenderAsk(tuple(dict.fromkeys(shots)), profile, new_takes, rejected)
    try:
        ctx.runner.start(ask)
    except RunnerBusy as exc:
        return error_response(409, exc.paragraph())
    return web.json_response({"ok": True, "render": ctx.runner.message()}, status=202)


async def render_stop(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    await _json_body(request)
    if not ctx.runner.stop():
        return error_response(409, "no render started from this page is running")
    return web.json_response({"ok": True, "render": ctx.runner.message()})


async def render_cancel(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    await _json_body(request)
    if not ctx.runner.cancel():
        return error_response(409, "no render started from this page is running")
    return web.json_response({"ok": True, "render": ctx.runner.message()})


def add_routes(app: web.Application) -> None:
    """Every route of the review page."""
    r = app.router
    r.add_get("/", index)
    r.add_get("/static/{name}", static)
    r.add_get("/api/meta", meta)
    r.add_get("/api/board", board)
    r.add_get("/api/events", events)
    r.add_get("/media/{asset_id}", media)
    r.add_get("/thumb/{asset_id}", thumb)
    r.add_get("/preview/{key}", preview)
    for name, action, token in (
        ("pick", _pick, False),
        ("approve", _approve, False),
        ("reject", _reject, False),
        ("comment", _comment, False),
        ("edit", _edit, True),
    ):
        r.add_post(f"/api/shots/{{shot_id}}/{name}", _shot_action(action, token))
    r.add_post("/api/render", render)
    r.add_post("/api/render/stop", render_stop)
    r.add_post("/api/render/cancel", render_cancel)
