"""Timelines from recorded events, thresholds and alerts, exports, summaries."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from storycore.monitoring import (
    AlertLevel,
    GPUSample,
    PerformanceMonitor,
    PromptTimeline,
    ResourceSample,
    Threshold,
    Thresholds,
    gpus_from_system_stats,
    render_prometheus,
    summarise_runs,
    write_csv,
    write_prometheus,
)
from tests._recordings import recording_text


def _timelines(name: str) -> list[PromptTimeline]:
    timelines: list[PromptTimeline] = []
    current: PromptTimeline | None = None
    for line in recording_text(name).splitlines():
        event = json.loads(line)
        if event["kind"] == "http" and event["method"] == "POST" and event["path"] == "/prompt":
            body = event["request_json"]
            current = PromptTimeline.for_prompt(event["response_json"]["prompt_id"], body["prompt"])
            current.submitted(event["t"])
            timelines.append(current)
        elif event["kind"] == "ws_recv" and current is not None:
            current.feed(event["t"], event["type"], event["data"])
    return timelines


def test_recorded_cold_run_splits_model_load_from_sampling() -> None:
    cold, warm, _, cached = _timelines("ws_sd15_txt2img.jsonl")
    phases = cold.phases
    assert cold.outcome == "success"
    # From the recording: loader node 4 runs 0.316 -> 1.7906, KSampler 1.9429 -> 6.3952.
    assert phases["model_load"] == pytest.approx(1.4746, abs=1e-3)
    assert phases["sampling"] == pytest.approx(4.4523, abs=1e-3)
    assert phases["decode"] == pytest.approx(8.4887 - 6.3952, abs=1e-3)
    assert phases["queue_wait"] == pytest.approx(0.316 - 0.3117, abs=1e-4)
    assert phases["total"] == pytest.approx(8.6868 - 0.3117, abs=1e-3)
    assert warm.phases["model_load"] == 0.0  # loader cached
    assert warm.phases["sampling"] > 3.0
    assert cached.phases["sampling"] == 0.0 and cached.outcome == "success"


def test_recorded_error_and_interrupt_outcomes() -> None:
    outcomes = {t.outcome for t in _timelines("ws_d_execution_error.jsonl")}
    assert "error" in outcomes
    interrupted = _timelines("ws_sd15_interrupt_in_ksampler.jsonl")
    assert [t.outcome for t in interrupted if t.done] == ["interrupted"]


def _sample(cpu: float, memory: float, gpu_used: int | None = None) -> ResourceSample:
    gpus = () if gpu_used is None else (GPUSample(0, "card", 50.0, gpu_used, 100),)
    return ResourceSample(1.0, cpu, memory, 1, 2, 10.0, 100, gpus, "test")


def test_alerts_cross_thresholds_once_per_rise(tmp_path: Path) -> None:
    monitor = PerformanceMonitor(metrics_dir=tmp_path)
    assert monitor.record_sample(_sample(10, 50)) == []
    (alert,) = monitor.record_sample(_sample(90, 50))
    assert (alert.metric, alert.level, alert.threshold) == ("cpu", AlertLevel.WARNING, 85.0)
    assert monitor.record_sample(_sample(91, 50)) == []  # still warning: no repeat
    (critical,) = monitor.record_sample(_sample(96, 50))
    assert critical.level is AlertLevel.CRITICAL
    monitor.record_sample(_sample(10, 50))
    assert len(monitor.record_sample(_sample(99, 96, gpu_used=99))) == 3  # cpu, memory, gpu
    (start,) = monitor.record_timing("server_start", 45.0)
    assert start.level is AlertLevel.WARNING and "service start" in start.message
    (probe,) = monitor.record_timing("health_probe", 12.0)
    assert probe.level is AlertLevel.CRITICAL and probe.unit == "ms"
    assert monitor.record_timing("health_probe", 0.004) == []
    (slow,) = monitor.record_panel("shot-3", 130.0)
    assert slow.subject == "shot-3" and slow.metric == "workflow"
    assert monitor.record_queue_depth(3) == []
    assert monitor.record_queue_depth(26)[0].level is AlertLevel.CRITICAL


def test_error_rate_needs_enough_events() -> None:
    monitor = PerformanceMonitor(thresholds=Thresholds(error_rate_min_events=10))
    alerts = []
    for _ in range(9):
        alerts += monitor.record_outcome(False)
    assert alerts == []  # not enough events yet
    alerts += monitor.record_outcome(False)
    assert [a.level for a in alerts] == [AlertLevel.CRITICAL]
    quiet = PerformanceMonitor(thresholds=Thresholds(error_rate=Threshold(50, 90, "%")))
    for ok in [True] * 8 + [False] * 2:
        assert quiet.record_outcome(ok) == []
    assert quiet.error_rate == pytest.approx(20.0)


def test_exports_and_summary(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    monitor = PerformanceMonitor(metrics_dir=metrics, run_id="r1")
    monitor.record_timing("server_start", 4.0)
    monitor.record_panel("a", 10.0, phases={"model_load": 3.0, "sampling": 6.0, "decode": 1.0})
    monitor.record_panel("b", 200.0, phases={"sampling": 190.0})
    monitor.record_panel("c", 5.0, ok=False)
    monitor.record_sample(_sample(20, 30, gpu_used=40))
    monitor.close()
    lines = [json.loads(x) for x in (metrics / "run-r1.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run_start" and lines[-1]["type"] == "run_end"
    assert sum(1 for x in lines if x["type"] == "timing" and x["op"] == "panel") == 3

    summary = summarise_runs(metrics)
    (run,) = summary.runs
    assert (run.panels_ok, run.panels_failed, run.status) == (2, 1, "finished")
    assert run.time_split["sampling"] == 196.0 and run.time_split["model_load"] == 3.0
    assert [p["panel"] for p in run.slowest_panels] == ["b", "a", "c"]
    assert [a["metric"] for a in run.alerts] == ["workflow"]
    assert run.panels_per_hour is not None and run.panels_per_hour > 0

    text = render_prometheus(monitor)
    assert 'storycore_operation_seconds_count{operation="panel"} 3' in text
    assert 'storycore_panels_total{outcome="failed"} 1' in text
    assert 'storycore_alerts_total{level="warning"} 1' in text
    assert 'storycore_gpu_memory_used_bytes{gpu="0",name="card"} 40' in text
    _check_exposition(text)
    write_prometheus(monitor, tmp_path / "storycore.prom")
    assert (tmp_path / "storycore.prom").read_text() == text

    timings_csv, resources_csv = write_csv(monitor, tmp_path / "csv")
    rows = list(csv.DictReader(timings_csv.read_text().splitlines()))
    assert [r["op"] for r in rows].count("panel") == 3
    assert {r["panel"] for r in rows if r["op"] == "sampling"} == {"a", "b"}
    (resource,) = list(csv.DictReader(resources_csv.read_text().splitlines()))
    assert resource["gpu"] == "0" and resource["gpu_mem_used"] == "40"


def _check_exposition(text: str) -> None:
    """Every sample line is `name{labels} value` under a TYPE line of its family."""
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            base = name.split("{", 1)[0]
            assert base in typed or base.rsplit("_", 1)[0] in typed, line


def test_summary_skips_damage_and_orders_newest_first(tmp_path: Path) -> None:
    import os

    old = tmp_path / "run-old.jsonl"
    old.write_text(
        '{"type": "run_start", "t": 0}\nnot json\n'
        '{"type": "timing", "op": "panel", "seconds": 1, "t": 10, "panel": "x"}\n'
    )
    new = tmp_path / "run-new.jsonl"
    new.write_text('{"type": "run_start", "t": 100}\n')
    os.utime(old, (1, 1))
    summary = summarise_runs(tmp_path, last=5)
    assert [r.run_id for r in summary.runs] == ["new", "old"]
    assert summary.runs[1].status == "unfinished" and summary.runs[1].panels_ok == 1
    assert summary.runs[1].panels_per_hour == pytest.approx(360.0)
    assert summarise_runs(tmp_path / "none").runs == []


def test_vram_from_system_stats() -> None:
    stats: dict[str, Any] = json.loads(recording_text("system_stats.json"))["body"]
    assert gpus_from_system_stats(stats) == ()  # the recording ran with --cpu
    gpu_stats = {
        "devices": [
            {
                "name": "cuda:0 NVIDIA",
                "type": "cuda",
                "index": 0,
                "vram_total": 100,
                "vram_free": 25,
            }
        ]
    }
    (gpu,) = gpus_from_system_stats(gpu_stats)
    assert gpu.memory_used == 75 and gpu.memory_percent == 75.0
