"""Benchmark 4: ``ComfyUIClient.download`` (``/view``) vs raw aiohttp streaming of the same files.

The files (PNGs of random pixels, so nothing compresses) sit in an emulator process's output
folder. Both sides stream with 64 KiB chunks into a file on the same disk; the raw side does
nothing else, the client also hashes (sha256), checks sizes, writes through a ``.part`` file,
checks that it is an image (Pillow: chunks and CRCs), fsyncs and renames. A third side streams
raw but with the client's guarantees (sha256 + fsync), to separate the cost of those
guarantees from the client's own. Runs alternate and the best of each is compared.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path

import aiohttp

from bench._common import Row, emulators
from storycore.comfyui import ComfyUIClient


def _noise_png(size: int) -> bytes:
    """A real PNG of about ``size`` bytes of random pixels (the client checks that what it
    downloads is an image, so the files must be ones; random pixels do not compress)."""
    import io
    import math

    from PIL import Image

    side = math.isqrt(size // 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        out, format="PNG", compress_level=0
    )
    return out.getvalue()


async def _raw(url: str, names: list[str], dest: Path) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for name in names:
            params = {"filename": name, "subfolder": "", "type": "output"}
            async with session.get(url + "/view", params=params) as r:
                r.raise_for_status()
                with (dest / name).open("wb") as handle:
                    async for chunk in r.content.iter_chunked(64 * 1024):
                        handle.write(chunk)
    return time.perf_counter() - started


async def _raw_checked(url: str, names: list[str], dest: Path) -> float:
    """Raw streaming with the client's guarantees: sha256 of the bytes and fsync at the end."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for name in names:
            params = {"filename": name, "subfolder": "", "type": "output"}
            async with session.get(url + "/view", params=params) as r:
                r.raise_for_status()
                digest = hashlib.sha256()
                with (dest / name).open("wb") as handle:
                    async for chunk in r.content.iter_chunked(64 * 1024):
                        digest.update(chunk)
                        handle.write(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
    return time.perf_counter() - started


async def _client(url: str, names: list[str], dest: Path) -> float:
    started = time.perf_counter()
    async with ComfyUIClient(url) as client:
        for name in names:
            await client.download({"filename": name, "subfolder": "", "type": "output"}, dest)
    return time.perf_counter() - started


async def run(work: Path, *, quick: bool) -> list[Row]:
    count, size_mib = (4, 4) if quick else (8, 8)
    rounds = 3 if quick else 5
    names = [f"bench_{i:03d}.png" for i in range(count)]
    total = count * size_mib * (1 << 20)
    async with emulators(1, work / "emu-download", step_seconds=0.0) as (emu,):
        emu.output_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            (emu.output_dir / name).write_bytes(_noise_png(size_mib << 20))
        raw_times: list[float] = []
        checked_times: list[float] = []
        client_times: list[float] = []
        for i in range(rounds):
            for label, fn, times in (
                ("raw", _raw, raw_times),
                ("checked", _raw_checked, checked_times),
                ("client", _client, client_times),
            ):
                dest = work / f"dl-{label}-{i}"
                dest.mkdir()
                times.append(await fn(emu.url, names, dest))
                await asyncio.to_thread(shutil.rmtree, dest)
    raw, checked, client = min(raw_times), min(checked_times), min(client_times)
    ratio = raw / client
    return [
        Row(
            "download",
            "ComfyUIClient.download / raw aiohttp throughput",
            ratio,
            ">= 0.9",
            ratio >= 0.9,
            {
                "files": count,
                "file_mib": size_mib,
                "raw_mib_s": total / raw / (1 << 20),
                "client_mib_s": total / client / (1 << 20),
                "raw_s_all_rounds": [round(t, 4) for t in raw_times],
                "client_s_all_rounds": [round(t, 4) for t in client_times],
            },
        ),
        Row(
            "download",
            "  same, vs raw aiohttp + sha256 + fsync (equal guarantees)",
            checked / client,
            ">= 0.9",
            checked / client >= 0.9,
            {"raw_checked_mib_s": total / checked / (1 << 20)},
        ),
    ]
