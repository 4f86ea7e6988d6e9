"""The Performance Monitor: timings per operation and panel, resource sampling, thresholds
with alerts, and exports (JSON lines, CSV, Prometheus text and an optional ``/metrics``).

Typical use while rendering::

    async with MonitoringSession.from_settings(settings.metrics, project_dir) as monitor:
        with monitor.measure("submit", panel=shot_id):
            ...
        monitor.record_timeline(shot_id, timeline)  # model load vs sampling from the events

The session samples resources in the background, serves ``/metrics`` when a port is set, and
on exit writes the run's JSON lines, ``storycore.prom`` and CSV files under
``<project>/.storycore/metrics``.
"""

from storycore.monitoring._alerts import Alert, AlertLevel, Threshold, Thresholds, evaluate
from storycore.monitoring._export import (
    PROMETHEUS_CONTENT_TYPE,
    MetricsServer,
    render_prometheus,
    write_csv,
    write_prometheus,
)
from storycore.monitoring._monitor import (
    OPERATIONS,
    OperationStats,
    PerformanceMonitor,
    Timing,
    new_run_id,
)
from storycore.monitoring._resources import (
    GpuProbe,
    GPUSample,
    ResourceSample,
    gpus_from_system_stats,
    sample_resources,
)
from storycore.monitoring._sampler import ResourceSampler
from storycore.monitoring._session import PROMETHEUS_FILE, MonitoringSession
from storycore.monitoring._summary import (
    METRICS_DIR,
    RunsSummary,
    RunSummary,
    metrics_dir_for,
    summarise_runs,
)
from storycore.monitoring._timeline import PHASES, PromptTimeline

__all__ = [
    "METRICS_DIR",
    "OPERATIONS",
    "PHASES",
    "PROMETHEUS_CONTENT_TYPE",
    "PROMETHEUS_FILE",
    "Alert",
    "AlertLevel",
    "GPUSample",
    "GpuProbe",
    "MetricsServer",
    "MonitoringSession",
    "OperationStats",
    "PerformanceMonitor",
    "PromptTimeline",
    "ResourceSample",
    "ResourceSampler",
    "RunSummary",
    "RunsSummary",
    "Threshold",
    "Thresholds",
    "Timing",
    "evaluate",
    "gpus_from_system_stats",
    "metrics_dir_for",
    "new_run_id",
    "render_prometheus",
    "sample_resources",
    "summarise_runs",
    "write_csv",
    "write_prometheus",
]
