"""Exports: CSV files, the Prometheus text format (to a file, or served on ``/metrics``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from aiohttp import web

from storycore._fsutil import atomic_write_text
from storycore.errors import ConfigError
from storycore.monitoring._monitor import PerformanceMonitor

__all__ = ["MetricsServer", "render_prometheus", "write_csv", "write_prometheus"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return f"{value:.6g}" if value == value else "NaN"


def render_prometheus(monitor: PerformanceMonitor) -> str:
    """The monitor's state in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("storycore_operation_seconds", "summary", "Time spent per operation.")
    for op, stats in sorted(monitor.stats().items()):
        label = f'operation="{_label(op)}"'
        lines.append(f'storycore_operation_seconds{{{label},quantile="0.5"}} {_num(stats.p50)}')
        lines.append(f'storycore_operation_seconds{{{label},quantile="0.95"}} {_num(stats.p95)}')
        lines.append(f"storycore_operation_seconds_sum{{{label}}} {_num(stats.total)}")
        lines.append(f"storycore_operation_seconds_count{{{label}}} {stats.count}")
    family("storycore_panels_total", "counter", "Panels finished, by outcome.")
    lines.append(f'storycore_panels_total{{outcome="ok"}} {monitor.panels_ok}')
    lines.append(f'storycore_panels_total{{outcome="failed"}} {monitor.panels_failed}')
    family("storycore_alerts_total", "counter", "Threshold alerts raised, by level.")
    for level in ("warning", "critical"):
        count = sum(1 for a in monitor.alerts if a.level.value == level)
        lines.append(f'storycore_alerts_total{{level="{level}"}} {count}')
    if monitor.error_rate is not None:
        family("storycore_error_rate_percent", "gauge", "Failed requests, percent.")
        lines.append(f"storycore_error_rate_percent {_num(monitor.error_rate)}")
    if monitor.queue_depth is not None:
        family("storycore_queue_depth", "gauge", "Prompts waiting in ComfyUI's queue.")
        lines.append(f"storycore_queue_depth {monitor.queue_depth}")
    if monitor.samples:
        sample = monitor.samples[-1]
        gauges = [
            ("storycore_cpu_percent", "CPU use, percent.", sample.cpu_percent),
            ("storycore_memory_percent", "RAM use, percent.", sample.memory_percent),
            ("storycore_memory_used_bytes", "RAM used, bytes.", float(sample.memory_used)),
        ]
        if sample.disk_percent is not None:
            gauges.append(("storycore_disk_percent", "Disk use, percent.", sample.disk_percent))
        for name, help_text, value in gauges:
            family(name, "gauge", help_text)
            lines.append(f"{name} {_num(value)}")
        if sample.gpus:
            family("storycore_gpu_memory_used_bytes", "gauge", "GPU memory used, bytes.")
            for gpu in sample.gpus:
                if gpu.memory_used is not None:
                    gl = f'gpu="{gpu.index}",name="{_label(gpu.name)}"'
                    lines.append(f"storycore_gpu_memory_used_bytes{{{gl}}} {gpu.memory_used}")
            family("storycore_gpu_utilization_percent", "gauge", "GPU use, percent.")
            for gpu in sample.gpus:
                if gpu.utilization is not None:
                    gl = f'gpu="{gpu.index}",name="{_label(gpu.name)}"'
                    shown = _num(gpu.utilization)
                    lines.append(f"storycore_gpu_utilization_percent{{{gl}}} {shown}")
    return "\n".join(lines) + "\n"


def write_prometheus(
    monitor: PerformanceMonitor, path: Path, *, inside: Path | None = None
) -> None:
    """Write :func:`render_prometheus` to ``path`` atomically (node_exporter textfile style);
    ``inside`` (the project) refuses a folder reached through a link that leaves it."""
    atomic_write_text(path, render_prometheus(monitor), inside=inside)


def write_csv(
    monitor: PerformanceMonitor, folder: Path, *, inside: Path | None = None
) -> tuple[Path, Path]:
    """``timings.csv`` and ``resources.csv`` in ``folder``, written atomically (``inside`` as
    for :func:`write_prometheus`)."""
    timings = io.StringIO()
    writer = csv.writer(timings, lineterminator="\n")
    writer.writerow(["run_id", "t", "op", "panel", "seconds", "ok"])
    for t in monitor.timings:
        writer.writerow(
            [monitor.run_id, f"{t.t:.3f}", t.op, t.panel or "", f"{t.seconds:.6f}", t.ok]
        )
    resources = io.StringIO()
    writer = csv.writer(resources, lineterminator="\n")
    writer.writerow(
        [
            "run_id",
            "t",
            "cpu_percent",
            "memory_percent",
            "disk_percent",
            "gpu",
            "gpu_util",
            "gpu_mem_used",
        ]
    )
    for s in monitor.samples:
        gpu_rows = [(str(g.index), g.utilization, g.memory_used) for g in s.gpus] or [
            ("", None, None)
        ]
        for gpu, util, used in gpu_rows:
            writer.writerow(
                [
                    monitor.run_id,
                    f"{s.t:.3f}",
                    f"{s.cpu_percent:.1f}",
                    f"{s.memory_percent:.1f}",
                    "" if s.disk_percent is None else f"{s.disk_percent:.1f}",
                    gpu,
                    "" if util is None else f"{util:.1f}",
                    "" if used is None else used,
                ]
            )
    timings_path, resources_path = folder / "timings.csv", folder / "resources.csv"
    atomic_write_text(timings_path, timings.getvalue(), inside=inside)
    atomic_write_text(resources_path, resources.getvalue(), inside=inside)
    return timings_path, resources_path


class MetricsServer:
    """Serves ``GET /metrics`` on ``host:port`` (loopback, any free port by default)."""

    def __init__(self, monitor: PerformanceMonitor, host: str = "127.0.0.1", port: int = 0) -> None:
        self.monitor = monitor
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=render_prometheus(self.monitor).encode("utf-8"),
            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE},
        )

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        if self._runner is not None:
            return self.port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot serve /metrics on {self.host}:{self.port}: {exc.strerror or exc}",
                where="metrics.prometheus_port",
                hint="choose a free port, or leave it unset to skip the endpoint",
            ) from exc
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
