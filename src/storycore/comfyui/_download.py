"""``/view`` downloads: into a file or into memory, bounded and checked.

Into a file: a safe target path under the destination folder, which must stay inside the
``inside`` root (the project: no link planted there carries the write out); streamed into a
``.<name>.<8 hex>.part`` file, hashed (sha256) on the way by worker threads, refused as soon as
it is larger than the image limit or its header says it has too many pixels; checked as an image
(Pillow, without decoding the pixels), then renamed into place. Into memory: the same limits
and checks, the bytes held once. Both within the request deadline, whatever the server trickles.
A redirect to another origin (hosted servers send ``/view`` to storage) is followed without
credentials (see :mod:`storycore.comfyui._transport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import os
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from storycore._fsutil import ensure_inside, open_inside, safe_join
from storycore.comfyui._images import HeaderCheck, verify_image
from storycore.comfyui._models import DownloadedFile
from storycore.comfyui._transport import Transport, translate_errors
from storycore.errors import AssetError, ChecksumMismatch, ServerResponseError, UnsafePathError

__all__ = ["download_to", "fetch_bytes", "safe_target"]

_T = TypeVar("_T")

_CHUNK = 256 * 1024  # what one read from the response hands over, at most
_PIECE = 1 << 20  # what one hash/write step in a worker thread takes
_SYNC_EVERY = 4 << 20  # the writer flushes to disk this often (the final fsync waits less)
_IN_FLIGHT = 8 << 20  # received bytes that may wait for the hash and write workers
_SMALL = 4 << 20  # an answer announced at most this long is received whole (no workers)
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


def _checked_target(
    root: Path, dest_dir: Path, params: Mapping[str, str], name: str | None
) -> Path:
    if name is not None:
        target = safe_target(dest_dir, "", name)
    else:
        target = safe_target(dest_dir, params.get("subfolder", ""), params.get("filename", ""))
    ensure_inside(root, dest_dir, what="download folder")
    return target


async def _local(target: Path, func: Callable[..., _T], *args: object) -> _T:
    """Run a blocking file operation in a thread; a local OS error is an AssetError (not a
    server problem)."""
    try:
        return await asyncio.to_thread(func, *args)
    except OSError as exc:
        raise _local_error(target, exc) from None


def _open_part(root: Path, path: Path) -> BinaryIO:
    """A new ``.part`` file, created (never a link followed) in a folder inside ``root``."""
    fd = open_inside(root, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what="download")
    return os.fdopen(fd, "wb")


def _finish(handle: BinaryIO, part: Path, target: Path, root: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    ensure_inside(root, target.parent, what="download's folder")
    os.replace(part, target)  # a link at ``target`` is replaced, never written through


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


def _too_big(name: str | None, max_bytes: int, where: str) -> AssetError:
    return AssetError(
        f"{name!r} is larger than {max_bytes} bytes ({max_bytes / (1 << 20):g} MiB), more than "
        "one image may be; it was not kept",
        where=where,
        hint="check the graph's output size; raise comfyui.max_image_mb if such images are "
        "really wanted",
    )


async def download_to(
    transport: Transport,
    params: Mapping[str, str],
    dest_dir: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    inside: Path | None = None,
    max_bytes: int | None = None,
    name: str | None = None,
    verify: bool = True,
) -> DownloadedFile:
    """Stream ``/view`` into ``dest_dir/subfolder/filename`` (or ``dest_dir/name``)."""
    root = inside if inside is not None else dest_dir
    # Path checks follow every link (a few lstat calls per component): off the event loop.
    target = await asyncio.to_thread(_checked_target, root, dest_dir, params, name)
    limit = transport.limits.image if max_bytes is None else max_bytes
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    filename = params.get("filename")
    where = str(transport.address.http_url("/view"))
    action = f"downloading {filename!r}"
    size = 0
    async with transport.deadline(where, action):
        with translate_errors(where, action=action, timeouts=transport.timeouts):
            async with transport.stream("GET", "/view", params=dict(params)) as response:
                _check_status(response, params, where)
                announced = response.content_length
                if announced is not None and announced > limit:
                    raise _too_big(filename, limit, where)
                content_type = response.headers.get("Content-Type", "")
                header = HeaderCheck(
                    max_pixels=transport.limits.image_pixels, name=str(filename), where=where
                )
                expected = (expected_size, expected_sha256)
                if announced is not None and announced <= _SMALL:
                    # A small answer (most frames): received whole, then written, hashed,
                    # checked and renamed in one worker step, without the streaming workers.
                    data = await _receive_whole(
                        response, params, where, limit, header if verify else None
                    )
                    check = (
                        (transport.limits.image_pixels, str(filename), where) if verify else None
                    )
                    landed = await _local(
                        target, _land_whole, data, root, part, target, expected, check
                    )
                    return _downloaded(target, len(data), landed[0], content_type, landed[1])
                handle = await _local(target, _open_part, root, part)
                sink = _Sink(target, handle)
                try:
                    batch: list[bytes] = []
                    batched = 0
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise _too_big(filename, limit, where)
                        if verify:
                            header.feed(chunk)
                        batch.append(chunk)
                        batched += len(chunk)
                        if batched >= _PIECE:
                            await sink.put(batch, batched)
                            batch, batched = [], 0
                    if batch:
                        await sink.put(batch, batched)
                    await sink.drain()
                    _check_size(params, where, size, announced)
                    hexdigest = sink.digest.hexdigest()
                    _check_expected(expected, filename, size, hexdigest, where)
                    facts: tuple[int, int, str] | None = None
                    if verify:
                        header.finish()
                        await _local(target, handle.flush)
                        facts = await asyncio.to_thread(
                            verify_image,
                            part,
                            max_pixels=transport.limits.image_pixels,
                            name=str(filename),
                            where=where,
                        )
                    await _local(target, _finish, handle, part, target, root)
                except BaseException:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(sink.drain())  # no worker may still hold the file
                    await asyncio.shield(asyncio.to_thread(_discard, handle, part))
                    raise
                finally:
                    sink.close()
    return _downloaded(target, size, hexdigest, content_type, facts)


async def _receive_whole(
    response: Any,
    params: Mapping[str, str],
    where: str,
    limit: int,
    header: HeaderCheck | None,
) -> bytes:
    """The whole body, held once: refused as soon as it passes ``limit``, its image header
    checked on the way (``header``), its size checked against the announced length."""
    body = io.BytesIO()
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_big(params.get("filename"), limit, where)
        if header is not None:
            header.feed(chunk)
        body.write(chunk)
    _check_size(params, where, size, response.content_length)
    if header is not None:
        header.finish()
    return body.getvalue()  # no copy: the buffer is handed over


def _downloaded(
    target: Path, size: int, sha256: str, content_type: str, facts: tuple[int, int, str] | None
) -> DownloadedFile:
    width, height, kind = facts if facts is not None else (None, None, None)
    return DownloadedFile(
        path=target,
        size=size,
        sha256=sha256,
        content_type=content_type,
        width=width,
        height=height,
        format=kind,
    )


def _check_expected(
    expected: tuple[int | None, str | None], name: str | None, size: int, sha256: str, where: str
) -> None:
    expected_size, expected_sha256 = expected
    if expected_size is not None and size != expected_size:
        raise ChecksumMismatch(
            f"{name!r} has {size} bytes, expected {expected_size}",
            where=where,
            hint="the server file differs from what was expected",
        )
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise ChecksumMismatch(
            f"{name!r} has sha256 {sha256}, expected {expected_sha256}",
            where=where,
            hint="the server file differs from what was expected",
        )


def _land_whole(
    data: bytes,
    root: Path,
    part: Path,
    target: Path,
    expected: tuple[int | None, str | None],
    check: tuple[int, str, str] | None,
) -> tuple[str, tuple[int, int, str] | None]:
    """A whole small body: hashed and checked, written to its ``.part``, checked as an image,
    fsynced and renamed into place; the ``.part`` removed on any failure (blocking)."""
    sha256 = hashlib.sha256(data).hexdigest()
    name = check[1] if check is not None else target.name
    _check_expected(expected, name, len(data), sha256, check[2] if check else str(target))
    handle = _open_part(root, part)
    try:
        handle.write(data)
        facts: tuple[int, int, str] | None = None
        if check is not None:
            handle.flush()
            max_pixels, name, where = check
            facts = verify_image(part, max_pixels=max_pixels, name=name, where=where)
        _finish(handle, part, target, root)
    except BaseException:
        _discard(handle, part)
        raise
    return sha256, facts


async def fetch_bytes(
    transport: Transport,
    params: Mapping[str, str],
    max_bytes: int | None = None,
    *,
    verify: bool | None = None,
) -> bytes:
    """``/view`` into memory (for a file the caller edits before writing it itself), refusing
    more than ``max_bytes`` (default: the image limit) or too many pixels; the size is checked
    against the announced length. ``verify`` (default: when the answer came from another
    origin) checks the whole image with Pillow."""
    where = str(transport.address.http_url("/view"))
    name = params.get("filename")
    limit = transport.limits.image if max_bytes is None else max_bytes
    action = f"downloading {name!r}"
    async with transport.deadline(where, action):
        with translate_errors(where, action=action, timeouts=transport.timeouts):
            async with transport.stream("GET", "/view", params=dict(params)) as response:
                _check_status(response, params, where)
                announced = response.content_length
                if announced is not None and announced > limit:
                    raise _too_big(name, limit, where)
                header = HeaderCheck(
                    max_pixels=transport.limits.image_pixels, name=str(name), where=where
                )
                foreign = not transport.address.same_origin(response.url)
                data = await _receive_whole(response, params, where, limit, header)
    if verify or (verify is None and foreign):
        check = functools.partial(
            verify_image, max_pixels=transport.limits.image_pixels, name=str(name), where=where
        )
        if len(data) > _PIECE:
            await asyncio.to_thread(check, data)
        else:
            check(data)
    return data
