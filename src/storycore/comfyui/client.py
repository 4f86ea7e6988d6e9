"""The async HTTP client for one ComfyUI server.

``async with ComfyUIClient(ServerAddress("http://127.0.0.1:8188")) as client:`` opens one aiohttp
session; :attr:`ComfyUIClient.state` says whether it is unopened, open or closed. Every call
translates transport errors into :mod:`storycore.errors` (see ``_transport.translate_errors``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from storycore.comfyui._capabilities import (
    ServerCapabilities,
    detect_capabilities,
    probe_jobs_api,
)
from storycore.comfyui._download import download_to, fetch_bytes
from storycore.comfyui._jobs_api import (
    CancelOutcome,
    JobPage,
    JobRecord,
    cancel_prompt,
    check_prompt_id,
    is_canonical_prompt_id,
    jobs_query,
    parse_job,
    parse_job_page,
)
from storycore.comfyui._limits import (
    ClientLimits,
    JsonTooComplex,
    describe_complex,
)
from storycore.comfyui._models import (
    DownloadedFile,
    HistoryEntry,
    OutputFile,
    QueueState,
    SubmitResult,
    UploadedImage,
    parse_history_entry,
    parse_queue,
)
from storycore.comfyui._submit import submit_answer
from storycore.comfyui._translate import not_json_error, status_error
from storycore.comfyui._transport import ClientTimeouts, HttpResponse, ServerAddress, Transport
from storycore.comfyui._upload import image_ext, image_form, read_image, sha256_of
from storycore.errors import (
    ComfyUIError,
    ServerResponseError,
)

__all__ = ["CancelOutcome", "ClientState", "ComfyUIClient"]

_log = logging.getLogger(__name__)


class ClientState(enum.StrEnum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def new_client_id() -> str:
    return uuid.uuid4().hex


class ComfyUIClient:
    """HTTP calls to one ComfyUI server. One instance per server; not shared across loops."""

    def __init__(
        self,
        address: ServerAddress | str,
        timeouts: ClientTimeouts | None = None,
        *,
        client_id: str | None = None,
        object_info_ttl: float | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        self.address = address if isinstance(address, ServerAddress) else ServerAddress(address)
        self.timeouts = timeouts or ClientTimeouts()
        self.limits = limits or ClientLimits()
        self.transport = Transport(self.address, self.timeouts, self.limits)
        self._client_id = client_id or new_client_id()
        self._state = ClientState.UNOPENED
        self._object_info_ttl = object_info_ttl
        self._object_info: dict[str, Any] | None = None
        self._object_info_at = 0.0
        self._class_info: dict[str, dict[str, Any] | None] = {}
        self._uploads: dict[tuple[str, str, str], UploadedImage] = {}
        self._upload_lock = asyncio.Lock()
        self._capabilities: ServerCapabilities | None = None
        self._capabilities_lock = asyncio.Lock()
        self._has_jobs_api = False  # seen answering /api/jobs (kept; a no is asked again)

    # ------------------------------------------------------------------ lifecycle
    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def client_id(self) -> str:
        """The clientId of the current WebSocket connection; pass it to :meth:`submit`."""
        return self._client_id

    def rotate_client_id(self) -> str:
        """Choose a fresh clientId (one per WebSocket connection) and return it."""
        self._client_id = new_client_id()
        return self._client_id

    async def open(self) -> ComfyUIClient:
        if self._state is ClientState.CLOSED:
            raise ComfyUIError(
                "this ComfyUI client was closed",
                where=self.address.url,
                hint="create a new ComfyUIClient",
            )
        await self.transport.open()
        self._state = ClientState.OPEN
        return self

    async def close(self) -> None:
        await self.transport.close()
        self._state = ClientState.CLOSED

    async def __aenter__(self) -> ComfyUIClient:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"ComfyUIClient({self.address.url!r}, state={self._state.value})"

    # ------------------------------------------------------------------ helpers
    def _where(self, route: str) -> str:
        return str(self.address.http_url(route))

    async def _json(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        response = await self.transport.request(method, route, params=params, json_body=json_body)
        self._check_status(response, route)
        if not expect_json:
            return None
        return self._decode(response, route)

    def _check_status(self, response: HttpResponse, route: str) -> None:
        if response.status != 200:
            raise status_error(response.status, response.text(), route, self._where(route))

    def _decode(self, response: HttpResponse, route: str) -> Any:
        try:
            return response.json()
        except JsonTooComplex as problem:
            raise describe_complex(route, problem, self._where(route)) from None
        except ValueError:
            where = self._where(route)
            raise not_json_error(response.content_type, response.text(), route, where) from None

    # ------------------------------------------------------------------ read calls
    async def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: the probe that says whether a ComfyUI answers at all."""
        started = time.perf_counter()
        try:
            body = await self._json("GET", "/system_stats")
            if not isinstance(body, dict) or not isinstance(body.get("system"), dict):
                raise ServerResponseError(
                    "/system_stats answered JSON without a 'system' object: this is not a "
                    "ComfyUI server (check the URL and its path prefix)",
                    where=self._where("/system_stats"),
                )
        except ComfyUIError as err:
            _log.debug("probe of %s failed: %s", self.address.url, err.message)
            raise
        ms = (time.perf_counter() - started) * 1000.0
        _log.debug("probe of %s: ComfyUI answered in %.0f ms", self.address.url, ms)
        return body

    async def capabilities(self, *, refresh: bool = False) -> ServerCapabilities:
        """What this server can do (``/system_stats``, ``/features``, ``/api/jobs``), probed
        once and kept; a server that cannot be reached raises and nothing is kept."""
        async with self._capabilities_lock:
            if self._capabilities is None or refresh:
                self._capabilities = await detect_capabilities(self)
            return self._capabilities

    async def has_jobs_api(self) -> bool:
        """Whether the server has today's jobs API: the kept capabilities when there are some,
        else ``GET /api/jobs?limit=1`` alone. Never ``/system_stats`` first: a server too sick
        to answer that (why a panel fails over) must still be asked to cancel its prompt."""
        if self._capabilities is not None:
            return self._capabilities.jobs_api
        if not self._has_jobs_api:
            self._has_jobs_api = await probe_jobs_api(self, [])
        return self._has_jobs_api

    async def job(self, prompt_id: str) -> JobRecord | None:
        """``GET /api/jobs/{id}`` (today's servers): status, outputs, error; ``None`` when the
        server does not know the job."""
        if not is_canonical_prompt_id(prompt_id):
            return None  # today's servers refuse every other id: none can have such a job
        route = "/api/jobs/" + prompt_id
        response = await self.transport.request("GET", route)
        if response.status == 404:
            return None
        self._check_status(response, route)
        return parse_job(self._decode(response, route))

    async def jobs(
        self, *, status: Sequence[str] = (), limit: int | None = None, **filters: Any
    ) -> JobPage:
        """``GET /api/jobs`` with its filters (``status``, ``workflow_id``, ``sort_by``,
        ``sort_order``, ``limit``, ``offset``; see ``_jobs_api.jobs_query``)."""
        query = jobs_query(status=status, limit=limit, **filters)
        return parse_job_page(await self._json("GET", "/api/jobs", params=query))

    async def object_info(
        self, class_type: str | None = None, *, refresh: bool = False
    ) -> dict[str, Any] | None:
        """``/object_info`` (all classes) or one class; ``None`` for an unknown class.

        Cached per client (= per server) until :meth:`invalidate_object_info`, an upload, or
        the optional TTL.
        """
        if refresh or self._cache_expired():
            self.invalidate_object_info()
        if class_type is None:
            if self._object_info is None:
                body = await self._json("GET", "/object_info")
                if not isinstance(body, dict):
                    raise ServerResponseError(
                        "/object_info is not a JSON object",
                        where=self._where("/object_info"),
                        hint="check that the URL points at ComfyUI",
                    )
                self._object_info = body
                self._object_info_at = time.monotonic()
            return self._object_info
        if self._object_info is not None:
            info = self._object_info.get(class_type)
            return info if isinstance(info, dict) else None
        if class_type not in self._class_info:
            route = "/object_info/" + class_type
            body = await self._json("GET", route)
            entry = body.get(class_type) if isinstance(body, dict) else None
            self._class_info[class_type] = entry if isinstance(entry, dict) else None
            if not self._object_info_at:
                self._object_info_at = time.monotonic()
        return self._class_info[class_type]

    def _cache_expired(self) -> bool:
        if self._object_info_ttl is None or not self._object_info_at:
            return False
        return time.monotonic() - self._object_info_at > self._object_info_ttl

    def invalidate_object_info(self) -> None:
        """Forget the cached node definitions (after installing models or nodes)."""
        self._object_info = None
        self._class_info.clear()
        self._object_info_at = 0.0

    async def models(self, folder: str | None = None) -> list[str]:
        """Model folder names (``folder=None``) or the files in one folder."""
        route = "/models" if folder is None else "/models/" + folder
        body = await self._json("GET", route)
        if not isinstance(body, list):
            raise ServerResponseError(
                f"{route} is not a JSON list",
                where=self._where(route),
                hint="check the folder name against GET /models",
            )
        return [str(item) for item in body]

    async def queue(self) -> QueueState:
        return parse_queue(await self._json("GET", "/queue"))

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The history entry of one prompt, or ``None`` while it has none."""
        body = await self._json("GET", "/history/" + prompt_id)
        if not isinstance(body, dict):
            return None
        return parse_history_entry(prompt_id, body.get(prompt_id))

    async def recent_history(self, max_items: int = 20) -> dict[str, HistoryEntry]:
        """The last ``max_items`` history entries (at most that many, whatever the server
        sends)."""
        body = await self._json("GET", "/history", params={"max_items": str(max_items)})
        result: dict[str, HistoryEntry] = {}
        for prompt_id, entry in body.items() if isinstance(body, dict) else []:
            if len(result) >= max_items:
                break
            parsed = parse_history_entry(str(prompt_id), entry)
            if parsed is not None:
                result[str(prompt_id)] = parsed
        return result

    async def delete_history(self, prompt_ids: Sequence[str]) -> None:
        await self._json(
            "POST", "/history", json_body={"delete": list(prompt_ids)}, expect_json=False
        )

    # ------------------------------------------------------------------ submit / cancel
    async def submit(
        self,
        graph: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        client_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        front: bool = False,
        partial_execution_targets: Sequence[str] | None = None,
    ) -> SubmitResult:
        """Queue ``graph``. Raises :class:`PromptRejected` listing every node error.

        A 200 that still lists ``node_errors`` (one bad output branch beside good ones) is
        returned with ``SubmitResult.node_errors`` filled and logged as a warning. A
        ``prompt_id`` is checked first (``_jobs_api.check_prompt_id``): a UUID spelled other than
        canonical lowercase is refused, so is any non-UUID once the server is known as today's.
        """
        current = self._capabilities is not None and self._capabilities.jobs_api
        prompt_id = check_prompt_id(prompt_id, current_server=current) if prompt_id else None
        prompt_id = prompt_id or str(uuid.uuid4())
        cid = client_id if client_id is not None else self._client_id
        body: dict[str, Any] = {"prompt": dict(graph), "prompt_id": prompt_id, "client_id": cid}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        if front:
            body["front"] = True
        if partial_execution_targets:
            body["partial_execution_targets"] = list(partial_execution_targets)
        response = await self.transport.request("POST", "/prompt", json_body=body)
        return submit_answer(self, response, cid)

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt ``prompt_id`` if it runs; with ``None`` interrupt WHATEVER runs (global)."""
        body = {"prompt_id": prompt_id} if prompt_id is not None else None
        await self._json("POST", "/interrupt", json_body=body, expect_json=False)

    async def delete_from_queue(self, prompt_ids: Sequence[str]) -> None:
        await self._json(
            "POST", "/queue", json_body={"delete": list(prompt_ids)}, expect_json=False
        )

    async def cancel(
        self, prompt_id: str, *, allow_global_interrupt: bool = False
    ) -> CancelOutcome:
        """Delete ``prompt_id`` if pending, interrupt it if running; other prompts go on.

        Through ``POST /api/jobs/{id}/cancel`` where the server has it; else (0.3.64) through
        ``/queue`` and ``/interrupt``, and with ``allow_global_interrupt`` a global interrupt
        follows the targeted one, but only if ``/queue`` still shows our prompt running.
        """
        return await cancel_prompt(self, prompt_id, allow_global_interrupt=allow_global_interrupt)

    async def clear_queue(self) -> None:
        """Remove every pending prompt (the running one goes on)."""
        await self._json("POST", "/queue", json_body={"clear": True}, expect_json=False)

    async def free_memory(self, *, unload_models: bool = False) -> None:
        """Free memory (and ComfyUI's node cache); optionally unload the models."""
        body = {"free_memory": True, "unload_models": unload_models}
        await self._json("POST", "/free", json_body=body, expect_json=False)

    # ------------------------------------------------------------------ files
    async def upload_image(
        self,
        image: bytes | Path,
        filename: str | None = None,
        *,
        subfolder: str = "",
        type: str = "input",
        overwrite: bool = False,
    ) -> UploadedImage:
        """Upload an image once per content: the same bytes are not sent again.

        Always use the returned ``name`` (the server renames on clashes). A file is read only
        if it is a regular file of at most :attr:`ClientLimits.image` bytes.
        """
        data = await read_image(image, self.limits.image) if isinstance(image, Path) else image
        digest = (
            await asyncio.to_thread(sha256_of, data) if len(data) > 1 << 20 else sha256_of(data)
        )
        key = (digest, subfolder, type)
        async with self._upload_lock:
            cached = self._uploads.get(key)
            if cached is not None:
                return cached
            name = filename or f"storycore_{digest[:16]}{image_ext(data)}"
            form = image_form(data, name, type=type, subfolder=subfolder, overwrite=overwrite)
            response = await self.transport.request("POST", "/upload/image", data=form)
            self._check_status(response, "/upload/image")
            payload = self._decode(response, "/upload/image")
            if not isinstance(payload, dict) or not payload.get("name"):
                raise ServerResponseError(
                    "/upload/image answered without a file name",
                    where=self._where("/upload/image"),
                    hint="check that the URL points at ComfyUI",
                )
            uploaded = UploadedImage(
                name=str(payload["name"]),
                subfolder=str(payload.get("subfolder") or ""),
                type=str(payload.get("type") or type),
                sha256=digest,
                size=len(data),
            )
            self._uploads[key] = uploaded
            # LoadImage's list of choices changed.
            self.invalidate_object_info()
            return uploaded

    def forget_uploads(self) -> None:
        """Forget which bytes were uploaded (e.g. after the server's input folder was wiped)."""
        self._uploads.clear()

    async def download(
        self,
        ref: OutputFile | Mapping[str, Any],
        dest_dir: Path,
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        inside: Path | None = None,
        max_bytes: int | None = None,
        name: str | None = None,
        verify: bool = True,
    ) -> DownloadedFile:
        """Stream ``/view`` into ``dest_dir/subfolder/filename`` (or ``dest_dir/name``): a
        ``.part`` file hashed on the way, size + sha256 checked, renamed into place.

        ``inside`` is the folder no write may leave (the project; default ``dest_dir``): a
        link planted on the way that leads out is an :class:`OutsideProjectError`. At most
        ``max_bytes`` (default :attr:`ClientLimits.image`) are accepted; with ``verify`` the
        file must be an image (Pillow, without decoding the pixels) of at most
        :attr:`ClientLimits.image_pixels` pixels. Raises :class:`UnsafePathError` before any
        request when the server-provided filename or subfolder would leave ``dest_dir``.
        """
        return await download_to(
            self.transport,
            _view_params(ref),
            dest_dir,
            expected_sha256=expected_sha256,
            expected_size=expected_size,
            inside=inside,
            max_bytes=max_bytes,
            name=name,
            verify=verify,
        )

    async def fetch(
        self,
        ref: OutputFile | Mapping[str, Any],
        *,
        max_bytes: int | None = None,
        verify: bool | None = None,
    ) -> bytes:
        """``/view`` into memory, at most ``max_bytes`` (default :attr:`ClientLimits.image`),
        for a file the caller edits before writing it (the engine adds provenance to each
        image and writes it once). The image's header is checked for its pixel count on the
        way; ``verify`` (default: when a redirect took the answer to another origin) checks
        the whole image."""
        return await fetch_bytes(self.transport, _view_params(ref), max_bytes, verify=verify)


def _view_params(ref: OutputFile | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(ref, OutputFile):
        return ref.view_params()
    return {
        "filename": str(ref.get("filename", "")),
        "subfolder": str(ref.get("subfolder") or ""),
        "type": str(ref.get("type") or "output"),
    }
