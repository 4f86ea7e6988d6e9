"""``/view`` downloads: into a file (safe target path, ``.part`` file, size + sha256, atomic
rename) or into memory (size-bounded)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from storycore._fsutil import safe_join
from storycore.comfyui._models import DownloadedFile
from storycore.comfyui._transport import Transport, translate_errors
from storycore.errors import AssetError, ChecksumMismatch, ServerResponseError, UnsafePathError

__all__ = ["download_to", "fetch_bytes", "safe_target"]

_T = TypeVar("_T")

_CHUNK = 256 * 1024  # what one read from the response hands over, at most
_PIECE = 1 << 20  # what one hash/write step in a worker thread takes
_SYNC_EVERY = 4 << 20  # the writer flushes to disk this often (the final fsync waits less)
_IN_FLIGHT = 8 << 20  # received bytes that may wait for the hash and write workers
_datasync = getattr(os, "fdatasync", os.fsync)  # Windows has no fdatasync


def safe_target(dest_dir: Path, subfolder: str, filename: str) -> Path:
    """``dest_dir/subfolder/filename``, or :class:`UnsafePathError` if it would leave dest_dir."""
    problem: str | None = None
    if not filename or filename in (".", "..") or filename.endswith(("/", "\\")):
        problem = f"the file name {filename!r} is not a file name"
    else:
        try:
            target = safe_join(dest_dir, subfolder, filename)
        except ValueError as exc:
            problem = str(exc)
        else:
            if target.resolve() == dest_dir.resolve():
                problem = f"the file name {filename!r} names the folder itself"
            else:
                return target
    raise UnsafePathError(
        f"refusing to write the server file subfolder={subfolder!r} filename={filename!r}: "
        f"{problem}",
        where=str(dest_dir),
        hint="the server (or a node) produced a hostile or broken output name; check the graph",
    )


async def _local(target: Path, func: Callable[..., _T], *args: object) -> _T:
    """Run a blocking file operation in a thread; a local OS error is an AssetError (not a
    server problem)."""
    try:
        return await asyncio.to_thread(func, *args)
    except OSError as exc:
        raise _local_error(target, exc) from None


def _open_part(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")


def _finish(handle: BinaryIO, part: Path, target: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(part, target)


def _discard(handle: BinaryIO, part: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(OSError):
        part.unlink()


class _Sink:
    """Hashes and writes the received chunks on two worker threads of its own (each keeps the
    order), while the event loop receives the next ones: hashlib and file writes release the
    GIL, so the three overlap. The writer also flushes to disk every few MiB, so the final
    fsync has little left to wait for; up to :data:`_IN_FLIGHT` bytes may wait for the workers
    (back-pressure on a slow disk, bounded memory).
    """

    def __init__(self, target: Path, handle: BinaryIO) -> None:
        self.target = target
        self.handle = handle
        self.digest = hashlib.sha256()
        self._unsynced = 0
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="storycore-hash")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="storycore-write")
        self._pending: deque[tuple[asyncio.Future[None], asyncio.Future[None], int]] = deque()
        self._in_flight = 0

    def _hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.digest.update(chunk)

    def _write(self, chunks: list[bytes]) -> None:
        self.handle.writelines(chunks)
        self._unsynced += sum(len(c) for c in chunks)
        if self._unsynced >= _SYNC_EVERY:
            self.handle.flush()
            _datasync(self.handle.fileno())
            self._unsynced = 0

    async def put(self, chunks: list[bytes], size: int) -> None:
        loop = asyncio.get_running_loop()
        hashing = loop.run_in_executor(self._hasher, self._hash, chunks)
        writing = loop.run_in_executor(self._writer, self._write, chunks)
        self._pending.append((hashing, writing, size))
        self._in_flight += size
        while self._in_flight > _IN_FLIGHT:
            await self._oldest()

    async def _oldest(self) -> None:
        hashing, writing, size = self._pending.popleft()
        self._in_flight -= size
        try:
            await hashing
        finally:
            try:
                await writing
            except OSError as exc:
                raise _local_error(self.target, exc) from None

    async def drain(self) -> None:
        """Wait for every batch (each is waited for even when one failed)."""
        failure: BaseException | None = None
        while self._pending:
            try:
                await self._oldest()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def close(self) -> None:
        self._hasher.shutdown(wait=False)
        self._writer.shutdown(wait=False)


def _local_error(target: Path, exc: OSError) -> AssetError:
    return AssetError(
        f"cannot write the downloaded file ({exc.strerror or exc})",
        where=str(target),
        hint="check free disk space and the folder's permissions",
    )


def _check_size(params: Mapping[str, str], where: str, size: int, announced: int | None) -> None:
    if announced is not None and size != announced:
        raise ServerResponseError(
            f"download of {params.get('filename')!r} has {size} bytes, "
            f"the server announced {announced}",
            where=where,
            hint="the connection was cut; retry",
        )


def _check_status(response: Any, params: Mapping[str, str], where: str) -> None:
    if response.status != 200:
        raise ServerResponseError(
            f"/view answered HTTP {response.status} for {params.get('filename')!r}",
            where=where,
            hint="the file is missing on the server or its name was refused",
            status=response.status,
        )


async def download_to(
    transport: Transport,
    params: Mapping[str, str],
    dest_dir: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
) -> DownloadedFile:
    target = safe_target(dest_dir, params.get("subfolder", ""), params.get("filename", ""))
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    where = str(transport.address.http_url("/view"))
    size = 0
    with translate_errors(where, action=f"downloading {params.get('filename')!r}"):
        async with transport.stream("GET", "/view", params=dict(params)) as response:
            _check_status(response, params, where)
            announced = response.content_length
            content_type = response.headers.get("Content-Type", "")
            handle = await _local(target, _open_part, part)
            sink = _Sink(target, handle)
            try:
                batch: list[bytes] = []
                batched = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    batch.append(chunk)
                    batched += len(chunk)
                    if batched >= _PIECE:
                        await sink.put(batch, batched)
                        batch, batched = [], 0
                if batch:
                    await sink.put(batch, batched)
                await sink.drain()
                _check_size(params, where, size, announced)
                if expected_size is not None and size != expected_size:
                    raise ChecksumMismatch(
                        f"{params.get('filename')!r} has {size} bytes, expected {expected_size}",
                        where=where,
                        hint="the server file differs from what was expected",
                    )
                hexdigest = sink.digest.hexdigest()
                if expected_sha256 is not None and hexdigest != expected_sha256.lower():
                    raise ChecksumMismatch(
                        f"{params.get('filename')!r} has sha256 {hexdigest}, "
                        f"expected {expected_sha256}",
                        where=where,
                        hint="the server file differs from what was expected",
                    )
                await _local(target, _finish, handle, part, target)
            except BaseException:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(sink.drain())  # no worker may still hold the file
                await asyncio.shield(asyncio.to_thread(_discard, handle, part))
                raise
            finally:
                sink.close()
    return DownloadedFile(path=target, size=size, sha256=hexdigest, content_type=content_type)


async def fetch_bytes(transport: Transport, params: Mapping[str, str], max_bytes: int) -> bytes:
    """``/view`` into memory (for a file the caller edits before writing it itself), refusing
    more than ``max_bytes``; the size is checked against the announced length."""
    where = str(transport.address.http_url("/view"))
    name = params.get("filename")
    with translate_errors(where, action=f"downloading {name!r}"):
        async with transport.stream("GET", "/view", params=dict(params)) as response:
            _check_status(response, params, where)
            announced = response.content_length
            too_big = AssetError(
                f"{name!r} is larger than {max_bytes} bytes",
                where=where,
                hint="check the graph's output size (a single image this large is not a frame)",
            )
            if announced is not None and announced > max_bytes:
                raise too_big
            pieces: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big
                pieces.append(chunk)
            _check_size(params, where, size, announced)
    return b"".join(pieces)
