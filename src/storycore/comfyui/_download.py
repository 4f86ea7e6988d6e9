"""Streaming ``/view`` downloads: safe target path, ``.part`` file, size + sha256, atomic rename."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, TypeVar

from storycore._fsutil import safe_join
from storycore.comfyui._models import DownloadedFile
from storycore.comfyui._transport import Transport, translate_errors
from storycore.errors import AssetError, ChecksumMismatch, ServerResponseError, UnsafePathError

__all__ = ["download_to", "safe_target"]

_T = TypeVar("_T")

_FLUSH_BYTES = 1 << 20


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
        raise AssetError(
            f"cannot write the downloaded file ({exc.strerror or exc})",
            where=str(target),
            hint="check free disk space and the folder's permissions",
        ) from None


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
    digest = hashlib.sha256()
    size = 0
    with translate_errors(where, action=f"downloading {params.get('filename')!r}"):
        async with transport.stream("GET", "/view", params=dict(params)) as response:
            if response.status != 200:
                raise ServerResponseError(
                    f"/view answered HTTP {response.status} for {params.get('filename')!r}",
                    where=where,
                    hint="the file is missing on the server or its name was refused",
                    status=response.status,
                )
            announced = response.content_length
            content_type = response.headers.get("Content-Type", "")
            handle = await _local(target, _open_part, part)
            try:
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    buffer += chunk
                    if len(buffer) >= _FLUSH_BYTES:
                        await _local(target, handle.write, bytes(buffer))
                        buffer.clear()
                if buffer:
                    await _local(target, handle.write, bytes(buffer))
                if announced is not None and size != announced:
                    raise ServerResponseError(
                        f"download of {params.get('filename')!r} has {size} bytes, "
                        f"the server announced {announced}",
                        where=where,
                        hint="the connection was cut; retry",
                    )
                if expected_size is not None and size != expected_size:
                    raise ChecksumMismatch(
                        f"{params.get('filename')!r} has {size} bytes, expected {expected_size}",
                        where=where,
                        hint="the server file differs from what was expected",
                    )
                hexdigest = digest.hexdigest()
                if expected_sha256 is not None and hexdigest != expected_sha256.lower():
                    raise ChecksumMismatch(
                        f"{params.get('filename')!r} has sha256 {hexdigest}, "
                        f"expected {expected_sha256}",
                        where=where,
                        hint="the server file differs from what was expected",
                    )
                await _local(target, _finish, handle, part, target)
            except BaseException:
                await asyncio.shield(asyncio.to_thread(_discard, handle, part))
                raise
    return DownloadedFile(path=target, size=size, sha256=hexdigest, content_type=content_type)
