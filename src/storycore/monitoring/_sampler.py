"""The background resource sampler: one sample every ``interval`` seconds on an asyncio task.

Each sample runs in a worker thread (psutil calls do not sleep; ``nvidia-smi`` is bounded by a
timeout), so the event loop never waits on it. Without a local GPU tool, VRAM comes from the
``system_stats`` callable (e.g. a ComfyUI client's ``GET /system_stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from storycore.monitoring._monitor import PerformanceMonitor
from storycore.monitoring._resources import (
    GpuProbe,
    ResourceSample,
    gpus_from_system_stats,
    sample_resources,
)

__all__ = ["ResourceSampler"]

SystemStats = Callable[[], Awaitable[Mapping[str, Any]]]


class ResourceSampler:
    """Samples into ``monitor`` until :meth:`stop`; also flushes the monitor's records."""

    def __init__(
        self,
        monitor: PerformanceMonitor,
        *,
        interval: float = 5.0,
        disk_path: Path | None = None,
        gpu_mode: str = "auto",
        system_stats: SystemStats | None = None,
        stats_timeout: float = 5.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.monitor = monitor
        self.interval = interval
        self.disk_path = disk_path or Path.cwd()
        self.gpu_mode = gpu_mode
        self.system_stats = system_stats
        self.stats_timeout = stats_timeout
        self.samples_taken = 0
        self._probe: GpuProbe | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._probe = await asyncio.to_thread(GpuProbe, self.gpu_mode)
        await asyncio.to_thread(psutil.cpu_percent, None)  # prime: the next call has a baseline
        self._task = asyncio.create_task(self._run(), name="storycore-resource-sampler")

    async def sample_once(self) -> ResourceSample:
        sample = await asyncio.to_thread(sample_resources, self.disk_path, self._probe)
        if not sample.gpus and self.system_stats is not None:
            stats: Mapping[str, Any] | None = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.stats_timeout):
                    stats = await self.system_stats()
            if stats:
                gpus = gpus_from_system_stats(stats)
                if gpus:
                    sample = replace(sample, gpus=gpus, gpu_source="system_stats")
        self.monitor.record_sample(sample)
        self.samples_taken += 1
        return sample

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sample_once()
                await self.monitor.aflush()
            except OSError:
                pass  # a full disk or a vanished folder must not stop the render
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stop.wait()

    async def stop(self, grace: float = 10.0) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(grace):
                    await task
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._probe is not None:
            await asyncio.to_thread(self._probe.close)
            self._probe = None

    async def __aenter__(self) -> ResourceSampler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
