"""Metrics from a real run against the ComfyUI emulator, the background sampler (with a fake
``nvidia-smi`` on PATH), and the ``/metrics`` endpoint served over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions
from storycore.errors import ConfigError
from storycore.monitoring import (
    PROMETHEUS_CONTENT_TYPE,
    MetricsServer,
    PerformanceMonitor,
    PromptTimeline,
    ResourceSampler,
    Threshold,
    Thresholds,
    summarise_runs,
)


def _txt2img(seed: int, prefix: str) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "tiny-random-sd15.safetensors"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a frame", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 4,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


async def _render(
    session: aiohttp.ClientSession, url: str, monitor: PerformanceMonitor, panel: str, seed: int
) -> PromptTimeline:
    client_id = uuid.uuid4().hex
    prompt = _txt2img(seed, f"metrics/{panel}")
    async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
        with monitor.measure("submit", panel=panel):
            submitted = time.monotonic()
            async with session.post(
                f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}
            ) as resp:
                assert resp.status == 200, await resp.text()
                prompt_id = (await resp.json())["prompt_id"]
        timeline = PromptTimeline.for_prompt(prompt_id, prompt)
        timeline.submitted(submitted)
        async with asyncio.timeout(20):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                timeline.feed(time.monotonic(), event["type"], event.get("data", {}))
                if (
                    event["type"] == "executing"
                    and event["data"].get("node") is None
                    and timeline.done
                ):
                    break
    monitor.record_timeline(panel, timeline)
    return timeline


async def test_metrics_from_an_emulator_run(tmp_path: Path) -> None:
    metrics_dir = tmp_path / ".storycore" / "metrics"
    # A tight workflow threshold so the slowest panel raises a real alert.
    thresholds = Thresholds(workflow=Threshold(0.05, 100.0, "s"))
    options = EmulatorOptions(
        step_seconds=0.03,
        node_seconds=0.005,
        output_dir=tmp_path / "out",
        input_dir=tmp_path / "in",
        temp_dir=tmp_path / "tmp",
    )
    monitor = PerformanceMonitor(thresholds=thresholds, metrics_dir=metrics_dir, run_id="emu")
    async with (
        Emulator(options) as emu,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):

        async def system_stats() -> dict[str, Any]:
            async with session.get(f"{emu.url}/system_stats") as resp:
                data: dict[str, Any] = await resp.json()
                return data

        start = time.perf_counter()
        async with session.get(f"{emu.url}/system_stats") as resp:
            assert resp.status == 200
        monitor.record_timing("health_probe", time.perf_counter() - start)
        sampler = ResourceSampler(
            monitor, interval=0.05, disk_path=tmp_path, gpu_mode="none", system_stats=system_stats
        )
        async with sampler:
            timelines = [await _render(session, emu.url, monitor, f"shot-{i}", i) for i in range(3)]
        assert sampler.samples_taken >= 1 and not sampler.running
    await monitor.aclose()

    cold = timelines[0].phases
    assert all(t.outcome == "success" for t in timelines)
    assert cold["sampling"] >= 4 * 0.03 * 0.9  # 4 steps of 30 ms
    assert cold["sampling"] > cold["model_load"]
    assert timelines[1].phases["model_load"] == 0.0  # the loader is cached on the second run

    summary = summarise_runs(metrics_dir)
    (run,) = summary.runs
    assert run.run_id == "emu" and run.panels_ok == 3 and run.status == "finished"
    assert run.time_split["sampling"] >= 3 * 4 * 0.03 * 0.9
    assert run.panels_per_hour is not None and run.panels_per_hour > 100
    workflow_alerts = [a for a in run.alerts if a["metric"] == "workflow"]  # CPU may alert too
    assert {(a["metric"], a["level"], a["subject"]) for a in workflow_alerts} == {
        ("workflow", "warning", f"shot-{i}") for i in range(3)
    }
    records = [json.loads(x) for x in (metrics_dir / "run-emu.jsonl").read_text().splitlines()]
    assert {"run_start", "timing", "sample", "run_end"} <= {r["type"] for r in records}
    assert any(r["type"] == "timing" and r["op"] == "health_probe" for r in records)


def _fake_nvidia_smi(folder: Path, used_mib: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{folder}/calls"\n'
        f'echo "0, Fake RTX, 1000, {1000 - used_mib}, {used_mib}, 64, 550.1"\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell")
async def test_sampler_reads_gpu_from_nvidia_smi_and_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bin"
    _fake_nvidia_smi(folder, used_mib=990)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monitor = PerformanceMonitor()
    sampler = ResourceSampler(monitor, interval=0.02, disk_path=tmp_path, gpu_mode="nvidia-smi")
    async with sampler:
        for _ in range(500):
            if sampler.samples_taken >= 2:
                break
            await asyncio.sleep(0.01)
    sample = monitor.samples[-1]
    assert sample.gpu_source == "nvidia-smi"
    (gpu,) = sample.gpus
    assert gpu.name == "Fake RTX" and gpu.utilization == 64.0
    assert gpu.memory_used == 990 * 1024 * 1024
    gpu_alerts = [a for a in monitor.alerts if a.metric == "gpu_memory"]
    assert len(gpu_alerts) == 1 and gpu_alerts[0].level.value == "critical"  # 99 %, raised once
    assert (folder / "calls").read_text().count("--query-gpu=") >= 2


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell")
async def test_sampler_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow nvidia-smi (0.3 s a call): run on the event loop it would stall it that long.
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text('#!/bin/sh\nsleep 0.3\necho "0, Slow, 1000, 900, 100, 1, 1"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monitor = PerformanceMonitor()
    worst = 0.0
    sampler = ResourceSampler(monitor, interval=0.01, disk_path=tmp_path, gpu_mode="nvidia-smi")
    async with sampler:
        for _ in range(100):
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - before - 0.005)
        assert sampler.samples_taken >= 1
    assert monitor.samples[-1].gpus[0].name == "Slow"
    assert worst < 0.2, f"event loop stalled for {worst:.3f}s"


async def test_metrics_endpoint_serves_prometheus_on_loopback() -> None:
    monitor = PerformanceMonitor()
    monitor.record_panel("p1", 2.0, phases={"sampling": 1.5})
    server = MetricsServer(monitor)
    port = await server.start()
    try:
        assert port > 0 and server.url == f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(server.url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
                body = await resp.text()
            assert 'storycore_panels_total{outcome="ok"} 1' in body
            monitor.record_panel("p2", 3.0)
            async with session.get(server.url) as resp:
                assert 'storycore_panels_total{outcome="ok"} 2' in await resp.text()
        busy = MetricsServer(monitor, port=port)
        with pytest.raises(ConfigError):
            await busy.start()
    finally:
        await server.stop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/metrics")


async def test_monitoring_session_exports_on_exit(tmp_path: Path) -> None:
    from storycore.config import MetricsSettings
    from storycore.monitoring import MonitoringSession

    project = tmp_path / "proj"
    project.mkdir()
    session = MonitoringSession(
        project, interval=0.02, prometheus_port=0, gpu_mode="none", run_id="s1"
    )
    async with session as monitor:
        assert session.server is not None
        url = session.server.url
        monitor.record_panel("shot-1", 1.5, phases={"sampling": 1.0})
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(url) as resp,
        ):
            assert 'storycore_panels_total{outcome="ok"} 1' in await resp.text()
    metrics = project / ".storycore" / "metrics"
    assert 'storycore_panels_total{outcome="ok"} 1' in (metrics / "storycore.prom").read_text()
    assert (metrics / "csv-s1" / "timings.csv").read_text().count("shot-1") == 2
    (run,) = summarise_runs(metrics).runs
    assert run.status == "finished" and run.panels_ok == 1

    failing = MonitoringSession.from_settings(MetricsSettings(interval=0.05), project)
    with pytest.raises(RuntimeError):
        async with failing:
            raise RuntimeError("render crashed")
    statuses = {r.run_id: r.status for r in summarise_runs(metrics).runs}
    assert statuses[failing.monitor.run_id] == "failed"

    off = MonitoringSession.from_settings(MetricsSettings(enabled=False), tmp_path / "off")
    async with off as monitor:
        monitor.record_panel("x", 1.0)
    assert not (tmp_path / "off" / ".storycore").exists()
