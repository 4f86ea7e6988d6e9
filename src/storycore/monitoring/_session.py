"""One render's monitoring, set up and torn down in one ``async with``.

Starts the resource sampler and, when a port is given, the ``/metrics`` endpoint; on exit stops
both, marks the run finished (or failed) and writes ``storycore.prom``, ``timings.csv`` and
``resources.csv`` beside the run's JSON lines, all inside the project (a metrics folder that is
a link leaving it is refused).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from storycore.monitoring._alerts import Thresholds
from storycore.monitoring._export import MetricsServer, write_csv, write_prometheus
from storycore.monitoring._monitor import PerformanceMonitor
from storycore.monitoring._sampler import ResourceSampler, SystemStats
from storycore.monitoring._summary import metrics_dir_for

if TYPE_CHECKING:
    from storycore.config import MetricsSettings

__all__ = ["MonitoringSession"]

PROMETHEUS_FILE = "storycore.prom"


class MonitoringSession:
    """``async with MonitoringSession(project_dir) as monitor: ...``"""

    def __init__(
        self,
        project_dir: Path,
        *,
        enabled: bool = True,
        interval: float = 5.0,
        prometheus_port: int | None = None,
        prometheus_host: str = "127.0.0.1",
        thresholds: Thresholds | None = None,
        system_stats: SystemStats | None = None,
        gpu_mode: str = "auto",
        run_id: str | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.metrics_dir = metrics_dir_for(project_dir)
        self.enabled = enabled
        self.monitor = PerformanceMonitor(
            thresholds=thresholds,
            metrics_dir=self.metrics_dir if enabled else None,
            run_id=run_id,
            inside=project_dir,
        )
        self.sampler = (
            ResourceSampler(
                self.monitor,
                interval=interval,
                disk_path=project_dir,
                gpu_mode=gpu_mode,
                system_stats=system_stats,
            )
            if enabled
            else None
        )
        self.server = (
            MetricsServer(self.monitor, prometheus_host, prometheus_port)
            if enabled and prometheus_port is not None
            else None
        )

    @classmethod
    def from_settings(
        cls,
        settings: MetricsSettings,
        project_dir: Path,
        *,
        system_stats: SystemStats | None = None,
        thresholds: Thresholds | None = None,
    ) -> MonitoringSession:
        return cls(
            project_dir,
            enabled=settings.enabled,
            interval=settings.interval,
            prometheus_port=settings.prometheus_port,
            system_stats=system_stats,
            thresholds=thresholds,
        )

    async def __aenter__(self) -> PerformanceMonitor:
        if self.sampler is not None:
            await self.sampler.start()
        if self.server is not None:
            try:
                await self.server.start()
            except BaseException:
                if self.sampler is not None:
                    await self.sampler.stop()
                raise
        return self.monitor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.sampler is not None:
            await self.sampler.stop()
        if not self.enabled:
            return
        status = "finished" if exc is None else "failed"
        await self.monitor.aclose(status)
        await asyncio.to_thread(self._export)

    def _export(self) -> None:
        root = self.project_dir
        write_prometheus(self.monitor, self.metrics_dir / PROMETHEUS_FILE, inside=root)
        write_csv(self.monitor, self.metrics_dir / f"csv-{self.monitor.run_id}", inside=root)
