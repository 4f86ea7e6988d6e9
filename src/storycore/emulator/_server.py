"""HTTP routes of the emulator, each also under ``/api``, with ComfyUI's status codes and bodies."""

from __future__ import annotations

import asyncio
import functools
import json
import mimetypes
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ._executor import Executor
from ._faults import FaultController
from ._files import apply_mask, channel_png, convert_image, store_upload, view_path
from ._jobs_api import JobsRoutes
from ._nodedefs import NodeDefs, load_data_json
from ._nodes import resolve_input_image
from ._profiles import (
    CURRENT,
    SENSITIVE_EXTRA_DATA_KEYS,
    current_node_info,
    current_system_stats,
    invalid_prompt_id_body,
    is_canonical_uuid,
    server_features,
)
from ._validation import validate_prompt
from ._ws import SocketHub

__all__ = ["ServerContext", "build_app"]

_INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"
_INDEX_HTML = (
    '<!doctype html><html lang="en"><head><meta charset="UTF-8"><title>ComfyUI</title>'
    "</head><body><p>StoryCore ComfyUI emulator: no web UI.</p></body></html>"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerContext:
    defs: NodeDefs
    hub: SocketHub
    executor: Executor
    faults: FaultController
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    mark_placeholders: bool = False
    # "0.3.64" (the recordings) or "current" (today's source; see _profiles.py).
    profile: str = "0.3.64"


def list_input_files(input_dir: Path) -> list[str]:
    """Top-level image files of the input folder, as ``LoadImage`` lists them."""
    try:
        names = [e.name for e in os.scandir(input_dir) if e.is_file()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if (mimetypes.guess_type(n)[0] or "").startswith("image/"))


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


def build_app(ctx: ServerContext) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            host = request.headers.get("Host", "")
            if urlsplit(origin).netloc.lower() != host.lower():
                return _empty(403)
        if request.method == "OPTIONS":
            return _empty(200)
        fault = ctx.faults.take_route_fault(request.method, request.path)
        if fault is not None:
            return web.Response(status=fault[0], text=fault[1])
        return await handler(request)

    app = web.Application(middlewares=[guard], client_max_size=104857600)
    routes = _Routes(ctx)
    features = server_features(ctx.profile)
    ctx.hub.server_features = dict(features)
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/ws", ctx.hub.handle),
        ("GET", "/", routes.index),
        ("GET", "/system_stats", routes.system_stats),
        ("GET", "/object_info", routes.object_info),
        ("GET", "/object_info/{node_class}", routes.object_info_one),
        ("GET", "/queue", routes.get_queue),
        ("POST", "/queue", routes.post_queue),
        ("GET", "/prompt", routes.get_prompt),
        ("POST", "/prompt", routes.post_prompt),
        ("GET", "/history", routes.get_history),
        ("GET", "/history/{prompt_id}", routes.get_history_one),
        ("POST", "/history", routes.post_history),
        ("POST", "/interrupt", routes.interrupt),
        ("POST", "/free", routes.free),
        ("GET", "/view", routes.view),
        ("POST", "/upload/image", routes.upload_image),
        ("POST", "/upload/mask", routes.upload_mask),
        ("GET", "/features", routes.static_json(lambda: dict(features))),
        (
            "GET",
            "/embeddings",
            routes.static_json(lambda: load_data_json("embeddings.json")["body"]),
        ),
        (
            "GET",
            "/extensions",
            routes.static_json(lambda: load_data_json("extensions.json")["body"]),
        ),
        ("GET", "/models", routes.static_json(lambda: list(ctx.defs.model_folders))),
        ("GET", "/models/{folder}", routes.models_folder),
        ("GET", "/settings", routes.static_json(dict)),
        ("GET", "/users", routes.static_json(lambda: {"storage": "server", "migrated": True})),
        ("GET", "/i18n", routes.static_json(dict)),
        ("GET", "/workflow_templates", routes.static_json(dict)),
    ]
    if ctx.profile == CURRENT:
        # server.py @ 5e14d797 declares these as "/api/jobs...", so the /api copy is
        # "/api/api/jobs..." there too.
        table += JobsRoutes(ctx.executor).table()
    for method, path, handler in table:
        for prefix in ("", "/api"):
            full = prefix + path if path != "/" or not prefix else "/api/"
            if method == "GET":
                app.router.add_get(full, handler)
            else:
                app.router.add_route(method, full, handler)
    return app


class _Routes:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._system_stats: dict[str, Any] | None = None

    def static_json(self, make: Callable[[], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(make())

        return handler

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=_INDEX_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    async def system_stats(self, request: web.Request) -> web.StreamResponse:
        if self._system_stats is None:
            stats = load_data_json("system_stats.json")["body"]
            if self.ctx.mark_placeholders:
                # Opt-in (the mock backend): clients may render our frames as placeholders.
                stats["system"]["storycore_emulator"] = True
            if self.ctx.profile == CURRENT:
                stats = current_system_stats(stats)
            self._system_stats = stats
        return web.json_response(self._system_stats)

    def _node_info(self, name: str) -> dict[str, Any]:
        info = self.ctx.defs.info(name)
        return current_node_info(info) if self.ctx.profile == CURRENT else info

    def _all_info(self) -> dict[str, Any]:
        if self.ctx.profile != CURRENT:
            return self.ctx.defs.all_info()
        return {n: self._node_info(n) for n in self.ctx.defs.class_names()}

    # Node definitions list the model and input folders (read from disk on every request, as
    # ComfyUI does), so they are built off the event loop.
    async def object_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await asyncio.to_thread(self._all_info))

    async def object_info_one(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["node_class"]
        if name in self.ctx.defs:
            return web.json_response({name: await asyncio.to_thread(self._node_info, name)})
        return web.json_response({})

    async def models_folder(self, request: web.Request) -> web.StreamResponse:
        folder = request.match_info["folder"]
        if folder not in self.ctx.defs.model_folders:
            return _empty(404)
        return web.json_response(await asyncio.to_thread(self.ctx.defs.folder_files, folder))

    # ---- queue ---------------------------------------------------------------------------
    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        running, pending = self.ctx.executor.queue_snapshot()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        data = await _json_or_none(request)
        if isinstance(data, dict):
            if data.get("clear"):
                self.ctx.executor.wipe_queue()
            for pid in data.get("delete", []) or []:
                self.ctx.executor.delete_pending(str(pid))
        return _empty(200)

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.ctx.executor.queue_info())

    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
        except ValueError:
            return _internal_error()
        if not isinstance(data, dict):
            return _internal_error()
        executor = self.ctx.executor
        number: Any
        if "number" in data:
            try:
                number = float(data["number"])
            except (TypeError, ValueError):
                return _internal_error()
        else:
            number = executor.number
            if data.get("front"):
                number = -number
            executor.number += 1
        if "prompt" not in data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = data["prompt"]
        current = self.ctx.profile == CURRENT
        if current:
            # server.py @ 5e14d797: null or absent mints an id; anything else must be a
            # canonical lowercase UUID (0.3.64 took any value, as str()).
            chosen = data.get("prompt_id")
            if chosen is not None and not is_canonical_uuid(chosen):
                return web.json_response(invalid_prompt_id_body(), status=400)
            prompt_id = str(chosen) if chosen is not None else str(uuid.uuid4())
        else:
            prompt_id = str(data["prompt_id"]) if "prompt_id" in data else str(uuid.uuid4())
        if not isinstance(prompt, dict):
            return _internal_error()
        targets = data.get("partial_execution_targets")
        result = await asyncio.to_thread(
            validate_prompt,
            prompt,
            self.ctx.defs,
            targets if isinstance(targets, list) else None,
            self._custom_validate,
        )
        extra = data.get("extra_data", {})
        extra = dict(extra) if isinstance(extra, dict) else {}
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        usage = request.headers.get("Comfy-Usage-Source")
        if current and usage and "comfy_usage_source" not in extra:
            extra["comfy_usage_source"] = usage
        if not result.ok:
            return web.json_response(
                {"error": result.error, "node_errors": result.node_errors}, status=400
            )
        if current:
            for key in SENSITIVE_EXTRA_DATA_KEYS:  # kept apart there; never shown again
                extra.pop(key, None)
            extra["create_time"] = int(time.time() * 1000)
        executor.put([number, prompt_id, prompt, extra, result.good_outputs])
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}
        )

    def _custom_validate(self, class_type: str, name: str, value: Any) -> bool | str:
        if class_type in ("LoadImage", "LoadImageMask") and name == "image":
            c = self.ctx
            path = resolve_input_image(str(value), c.input_dir, c.output_dir, c.temp_dir)
            if not path.is_file():
                return f"Invalid image file: {value}"
        return True

    # ---- history -------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        try:
            max_items = int(query["max_items"]) if "max_items" in query else None
            offset = int(query["offset"]) if "offset" in query else -1
        except ValueError:
            return _internal_error()
        return web.json_response(self.ctx.executor.get_history(max_items, offset))

    async def get_history_one(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["prompt_id"]
        entry = self.ctx.executor.history.get(pid)
        return web.json_response({pid: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        data = await _json_or_none(request)
        if isinstance(data, dict):
            if data.get("clear"):
                self.ctx.executor.history.clear()
            for pid in data.get("delete", []) or []:
                self.ctx.executor.history.pop(str(pid), None)
        return _empty(200)

    async def interrupt(self, request: web.Request) -> web.StreamResponse:
        data = await _json_or_none(request)
        pid = data.get("prompt_id") if isinstance(data, dict) else None
        self.ctx.executor.interrupt(str(pid) if pid else None)
        return _empty(200)

    async def free(self, request: web.Request) -> web.StreamResponse:
        data = await _json_or_none(request)
        if isinstance(data, dict):
            self.ctx.executor.free(bool(data.get("free_memory", False)))
        return _empty(200)

    # ---- files ---------------------------------------------------------------------------
    def _dir_for(self, kind: str | None) -> Path | None:
        return {
            "output": self.ctx.output_dir,
            "input": self.ctx.input_dir,
            "temp": self.ctx.temp_dir,
        }.get(kind or "output")

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return _empty(404)
        filename = query["filename"]
        base: Path | None = None
        for tag, kind in ((" [output]", "output"), (" [input]", "input"), (" [temp]", "temp")):
            if filename.endswith(tag):
                filename, base = filename[: -len(tag)], self._dir_for(kind)
                break
        if not filename:
            return _empty(400)
        if filename[0] == "/" or ".." in filename:
            return _empty(400)
        if base is None:
            base = self._dir_for(query.get("type", "output"))
        if base is None:
            return _empty(400)
        found = await asyncio.to_thread(view_path, base, query.get("subfolder"), filename)
        if isinstance(found, int):
            return _empty(found)
        path, name = found
        disposition = {"Content-Disposition": f'filename="{name}"'}
        if "preview" in query:
            fmt, _, quality = query["preview"].partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") else "webp"
            body = await asyncio.to_thread(convert_image, path, fmt.upper(), int(quality or 90))
            return web.Response(body=body, content_type=f"image/{fmt}", headers=disposition)
        channel = query.get("channel", "rgba")
        if channel in ("rgb", "a"):
            body = await asyncio.to_thread(channel_png, path, channel)
            return web.Response(body=body, content_type="image/png", headers=disposition)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype in {"text/html", "application/xhtml+xml", "text/javascript", "text/css"}:
            ctype = "application/octet-stream"
        return web.FileResponse(path, headers={**disposition, "Content-Type": ctype})

    async def upload_mask(self, request: web.Request) -> web.StreamResponse:
        return await self.upload_image(request, mask=True)

    def _mask_source(self, original_ref: Any) -> Path | None:
        """The image a mask upload paints its alpha onto (``original_ref``), if it exists."""
        try:
            ref = json.loads(str(original_ref))
            filename = str(ref["filename"])
        except (ValueError, KeyError, TypeError):
            return None
        base: Path | None = None
        for tag, kind in ((" [output]", "output"), (" [input]", "input"), (" [temp]", "temp")):
            if filename.endswith(tag):
                filename, base = filename[: -len(tag)], self._dir_for(kind)
        if not filename or filename[0] == "/" or ".." in filename:
            return None
        base = base or self._dir_for(str(ref.get("type", "output")))
        if base is None:
            return None
        found = view_path(base, str(ref.get("subfolder", "")) or None, filename)
        return None if isinstance(found, int) else found[0]

    async def upload_image(self, request: web.Request, mask: bool = False) -> web.StreamResponse:
        try:
            post = await request.post()
        except ValueError:
            return _empty(400)
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return _empty(400)
        kind = str(post.get("type") or "input")
        if kind not in ("input", "temp", "output"):
            kind = "input"
        base = self._dir_for(kind)
        assert base is not None
        subfolder = str(post.get("subfolder", ""))
        overwrite = str(post.get("overwrite", "")) in ("true", "1")
        data = image.file.read()
        transform = None
        if mask:
            source = await asyncio.to_thread(self._mask_source, post.get("original_ref"))
            transform = functools.partial(apply_mask, source)
        name = await asyncio.to_thread(
            store_upload, base, subfolder, image.filename, data, overwrite, transform
        )
        if name is None:
            return _empty(400)
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


def _internal_error() -> web.Response:
    return web.Response(status=500, text=_INTERNAL_ERROR)


async def _json_or_none(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return json.loads(await request.text())
    except ValueError:
        return None
