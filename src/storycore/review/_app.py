"""The review server: the live board of one project, on a local aiohttp server.

:class:`ReviewServer` loads the project (a project that does not load is refused before
anything listens), starts the board feed (:class:`~storycore.review._feed.BoardFeed`), the
render runner and the thumbnail cache, and serves :func:`build_app` on ``host:port``
(``port=0``: a free one). Closing is bounded: the page's render is stopped, then cancelled
after a grace, the event streams and the feed end, the site closes.

The page's files are the package's ``static/`` folder, listed once at start (a fixed
allow-list of plain files with known suffixes); nothing outside that list is served from it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from storycore.errors import ConfigError
from storycore.review._http import CONTEXT, STATIC_TYPES, ReviewContext, add_routes
from storycore.review._runner import RenderRunner
from storycore.review._security import (
    MAX_BODY,
    AccessPolicy,
    add_headers,
    policy_middleware,
)

__all__ = ["STATIC_DIR", "ReviewServer", "build_app", "static_files"]

_log = logging.getLogger("storycore.review")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MAX_STOP_GRACE = 30.0  # at most this long for the page's running panels at shutdown
_CANCEL_GRACE = 2.0


def static_files(folder: Path = STATIC_DIR) -> dict[str, Path]:
    """The page's files: plain files (not links) directly in ``folder`` with a plain name and
    a suffix the server knows a content type for."""
    out: dict[str, Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for path in entries:
        if (
            _STATIC_NAME.fullmatch(path.name)
            and path.suffix.lower() in STATIC_TYPES
            and not path.is_symlink()
            and path.is_file()
        ):
            out[path.name] = path
    return out


def build_app(context: ReviewContext) -> web.Application:
    """The review page's aiohttp application over ``context``."""
    app = web.Application(middlewares=[policy_middleware(context.policy)], client_max_size=MAX_BODY)
    app[CONTEXT] = context
    app.on_response_prepare.append(add_headers)
    add_routes(app)
    return app


def _title(data: dict[str, Any], storyboard: dict[str, Any], fallback: str) -> str:
    for source in (data, storyboard):
        for key in ("title", "name"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return fallback


def _profile_names(settings: Any) -> list[str]:
    from storycore._profiles import profile_names

    return list(profile_names(settings))


class ReviewServer:
    """``storycore review``: serve the project at ``root`` (see the module).

    ``async with ReviewServer(...) as server``: listening once entered (``server.url``,
    ``server.page_url`` with the token when one is needed); :meth:`close` (or leaving the
    block) shuts down within about ``comfyui.graceful_shutdown`` (at most 30 s) + 2 s + 2 s.
    """

    def __init__(
        self,
        root: Path,
        settings: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        backends: Sequence[str] = (),
        mock: bool = False,
        token: str | None = None,
        ping_s: float = 15.0,
    ) -> None:
        self.root = Path(root)
        self.settings = settings
        self.host = "127.0.0.1" if host.lower() == "localhost" else host
        self.port = port
        self.policy = AccessPolicy(self.host, token=token)
        self.runner = RenderRunner(
            self.root, settings, backends=backends, mock=mock, on_state=self._broadcast
        )
        self.ping_s = ping_s
        self.context: ReviewContext | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._site_runner: web.AppRunner | None = None
        self._closed = False

    def _broadcast(self, message: dict[str, Any]) -> None:
        if self.context is not None:
            self.context.broadcast(message)

    @property
    def render_interrupted(self) -> bool:
        """True when closing the server cut a render of the page short."""
        return self.runner.interrupted

    @property
    def url(self) -> str:
        """The server's base URL (``http://host:port/``), without the token."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname() or "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.policy.port}/"

    @property
    def page_url(self) -> str:
        """The address to open: with ``?token=`` when the bind needs one."""
        token = self.policy.token
        return f"{self.url}?token={token}" if token else self.url

    # ------------------------------------------------------------------ life
    async def __aenter__(self) -> ReviewServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        import asyncio

        from storycore.project import load_project
        from storycore.review._board import thumb_cache
        from storycore.review._feed import BoardFeed

        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            project = await asyncio.to_thread(load_project, self.root)
            # The port first: an occupied one is refused before the feed starts watching.
            sock = self._listen()
            stack.callback(sock.close)
            project_id = project.project_id
            title = _title(project.data, project.storyboard, project_id)
            self.root = project.root
            del project
            feed = await stack.enter_async_context(BoardFeed(self.root))
            thumbs = thumb_cache(self.root)
            stack.callback(thumbs.close)
            self.context = ReviewContext(
                root=self.root,
                policy=self.policy,
                feed=feed,
                runner=self.runner,
                thumbs=thumbs,
                static=await asyncio.to_thread(static_files),
                project_id=project_id,
                title=title,
                profiles=_profile_names(self.settings),
                ping_s=self.ping_s,
            )
            site_runner = web.AppRunner(
                build_app(self.context), handle_signals=False, shutdown_timeout=1.0
            )
            await site_runner.setup()
            self._site_runner = site_runner
            await web.SockSite(site_runner, sock).start()
            self.policy.port = int(sock.getsockname()[1])
        except BaseException:
            await self.close()
            raise

    def _listen(self) -> socket.socket:
        """A listening socket on ``host:port`` (a :class:`ConfigError` when it cannot be)."""
        host = "" if self.host in ("", "0.0.0.0") else self.host
        try:
            infos = socket.getaddrinfo(
                host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family = infos[0][0] if host else socket.AF_INET
            return socket.create_server(
                (host, self.port), family=family, backlog=128, reuse_port=False
            )
        except OSError as exc:
            raise self._bind_error(exc) from None

    def _bind_error(self, exc: OSError) -> ConfigError:
        where = f"{self.host}:{self.port}"
        if exc.errno == errno.EADDRINUSE:
            return ConfigError(
                f"port {self.port} on {self.host} is already in use (another review page, "
                "or another program, listens there)",
                where=where,
                hint="Choose another with --port PORT, or --port 0 for any free port",
            )
        return ConfigError(
            f"cannot listen on {where}: {exc.strerror or exc}",
            where=where,
            hint="Check --host (an address of this machine, or 127.0.0.1) and --port",
        )

    async def close(self) -> None:
        """Shut down, bounded (see the class). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        grace = float(getattr(getattr(self.settings, "comfyui", None), "graceful_shutdown", 10))
        await self.runner.shutdown(min(max(grace, 0.0), _MAX_STOP_GRACE), _CANCEL_GRACE)
        if self.context is not None:
            self.context.close_streams()
        if self._site_runner is not None:
            with contextlib.suppress(Exception):
                await self._site_runner.cleanup()
        if self._stack is not None:
            with contextlib.suppress(Exception):
                await self._stack.aclose()
