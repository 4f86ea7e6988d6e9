"""Health monitor: backoff, failure counter (property tests), parsing, probes over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from storycore.comfyui.health import (
    FailureCounter,
    HealthMonitor,
    HealthState,
    ProbeOutcome,
    backoff_schedule,
    classify_probe,
    fetch_queue_remaining,
    parse_system_stats,
    probe_system_stats,
)
from storycore.errors import ServerResponseError, ServerTimeout
from tests._recordings import load_reference_json

from ._support import free_port, recorded_stats_app, serve

# -- backoff ------------------------------------------------------------------------------------


def test_backoff_defaults_are_one_second_doubling_capped_at_sixty() -> None:
    assert [backoff_schedule(n) for n in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_schedule(-3) == 1
    assert backoff_schedule(10_000) == 60


@settings(deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=500),
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=0.01, max_value=600),
)
def test_backoff_properties(attempt: int, base: float, cap: float) -> None:
    here = backoff_schedule(attempt, base=base, cap=cap)
    after = backoff_schedule(attempt + 1, base=base, cap=cap)
    assert 0 < here <= cap
    assert after >= here  # never shrinks
    assert after == pytest.approx(min(cap, here * 2))  # doubles until the cap
    assert backoff_schedule(0, base=base, cap=cap) == pytest.approx(min(base, cap))


# -- failure counter ----------------------------------------------------------------------------

outcomes = st.lists(st.sampled_from(list(ProbeOutcome)), max_size=60)


@settings(deadline=None)
@given(seq=outcomes, threshold=st.integers(min_value=1, max_value=6))
def test_failure_counter_properties(seq: list[ProbeOutcome], threshold: int) -> None:
    counter = FailureCounter(unhealthy_after=threshold)
    for outcome in seq:
        counter.record(outcome)
    trailing = 0
    for outcome in reversed(seq):
        if outcome in (ProbeOutcome.ERROR, ProbeOutcome.DOWN):
            trailing += 1
        else:
            break
    assert counter.consecutive_failures == trailing
    assert counter.total_checks == len(seq)
    if not seq:
        assert counter.state is HealthState.UNKNOWN
    elif seq[-1] is ProbeOutcome.OK:
        assert counter.state is HealthState.HEALTHY
    elif seq[-1] is ProbeOutcome.SLOW:
        assert counter.state is HealthState.DEGRADED
    else:
        expected = HealthState.UNHEALTHY if trailing >= threshold else HealthState.DEGRADED
        assert counter.state is expected


def test_failure_counter_reset_and_bad_threshold() -> None:
    counter = FailureCounter(unhealthy_after=1)
    assert counter.record(ProbeOutcome.DOWN) is HealthState.UNHEALTHY
    counter.reset()
    assert (counter.state, counter.consecutive_failures) == (HealthState.UNKNOWN, 0)
    with pytest.raises(ValueError):
        FailureCounter(unhealthy_after=0)


# -- parsing the recorded shape -----------------------------------------------------------------


def test_parse_recorded_system_stats() -> None:
    body = load_reference_json("system_stats.json")["body"]
    stats = parse_system_stats(body)
    assert stats.comfyui_version == "0.3.64"
    assert stats.os == "posix"
    assert stats.embedded_python is False
    assert "--disable-auto-launch" in stats.argv
    assert len(stats.devices) == 1
    device = stats.devices[0]
    assert (device.name, device.type, device.index) == ("cpu", "cpu", None)
    assert device.vram_total == body["devices"][0]["vram_total"]
    assert stats.vram_free == body["devices"][0]["vram_free"]


@pytest.mark.parametrize("body", [None, [], {"devices": []}, {"system": "x"}, "text"])
def test_parse_rejects_bodies_that_are_not_comfyui(body: Any) -> None:
    with pytest.raises(ServerResponseError, match="not a ComfyUI"):
        parse_system_stats(body, where="http://x/system_stats")


def test_parse_tolerates_odd_devices() -> None:
    stats = parse_system_stats(
        {"system": {}, "devices": ["junk", {"name": "cuda:0", "index": 0, "vram_total": 8.0}]}
    )
    assert [(d.name, d.index, d.vram_total) for d in stats.devices] == [("cuda:0", 0, 8)]
    assert stats.comfyui_version is None


# -- probes over loopback -----------------------------------------------------------------------


def _app(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_get("/system_stats", handler)
    return app


async def test_probe_ok_and_queue() -> None:
    async with serve(recorded_stats_app()) as port:
        url = f"http://127.0.0.1:{port}"
        result = await probe_system_stats(url, timeout=2)
        assert result.ok and result.status == 200
        assert result.stats is not None and result.stats.comfyui_version == "0.3.64"
        assert classify_probe(result, slow_threshold=1.0) is ProbeOutcome.OK
        assert await fetch_queue_remaining(url, timeout=2) == 2


async def test_probe_error_status_and_bad_body() -> None:
    async def fail(_r: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def junk(_r: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>")

    async with serve(_app(fail)) as port:
        result = await probe_system_stats(f"http://127.0.0.1:{port}", timeout=2)
        assert (result.ok, result.status) == (False, 500)
        assert result.error == "HTTP 500 from /system_stats: the server failed (see its log)"
        assert classify_probe(result, slow_threshold=1) is ProbeOutcome.ERROR
    async with serve(_app(junk)) as port:
        result = await probe_system_stats(f"http://127.0.0.1:{port}", timeout=2)
        assert result.answered and not result.ok
        assert result.error is not None and "not a ComfyUI" in result.error
        assert await fetch_queue_remaining(f"http://127.0.0.1:{port}", timeout=2) is None


async def test_probe_timeout_and_refused() -> None:
    async def hang(_r: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text="late")

    async with serve(_app(hang)) as port:
        result = await probe_system_stats(f"http://127.0.0.1:{port}", timeout=0.2)
        assert not result.answered
        assert result.error is not None and "no answer" in result.error
        assert result.elapsed < 2
    result = await probe_system_stats(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert classify_probe(result, slow_threshold=1) is ProbeOutcome.DOWN
    assert result.error == "nothing answers (connection refused)"


async def test_slow_answers_are_degraded() -> None:
    body = load_reference_json("system_stats.json")["body"]

    async def slow(_r: web.Request) -> web.Response:
        await asyncio.sleep(0.15)
        return web.json_response(body)

    async with serve(_app(slow)) as port:
        monitor = HealthMonitor(f"http://127.0.0.1:{port}", slow_threshold=0.05, timeout=2)
        await monitor.check()
        assert monitor.state is HealthState.DEGRADED
        assert monitor.consecutive_failures == 0


# -- the monitor --------------------------------------------------------------------------------


async def test_monitor_background_transitions_and_backoff() -> None:
    port = free_port()
    changes: list[tuple[HealthState, HealthState]] = []
    seen = asyncio.Event()

    async def listener(old: HealthState, new: HealthState, _probe: Any) -> None:
        changes.append((old, new))
        if new is HealthState.UNHEALTHY:
            seen.set()

    sync_calls: list[HealthState] = []
    monitor = HealthMonitor(
        f"http://127.0.0.1:{port}",
        interval=0.05,
        timeout=0.5,
        unhealthy_after=2,
        base_delay=0.02,
        max_delay=0.08,
    )
    monitor.add_listener(listener)
    monitor.add_listener(lambda _o, new, _p: sync_calls.append(new))
    async with monitor:
        async with serve(recorded_stats_app(), port):
            for _ in range(100):
                if monitor.state is HealthState.HEALTHY:
                    break
                await asyncio.sleep(0.02)
            assert monitor.state is HealthState.HEALTHY
            summary = monitor.summary()
            assert summary.comfyui_version == "0.3.64"
            assert summary.queue_remaining == 2
            assert summary.devices and summary.devices[0].type == "cpu"
            assert summary.last_check is not None and summary.response_time_ms is not None
        # The server is gone while the monitor keeps probing.
        await asyncio.wait_for(seen.wait(), timeout=5)
        assert monitor.consecutive_failures >= 2
        assert monitor.next_delay() <= 0.08
    assert not monitor.running
    assert changes[0][0] is HealthState.UNKNOWN
    assert [new for _old, new in changes].count(HealthState.HEALTHY) >= 1
    assert (HealthState.DEGRADED, HealthState.UNHEALTHY) in changes
    assert sync_calls == [new for _old, new in changes]
    assert monitor.summary().last_error is not None


def test_next_delay_follows_backoff() -> None:
    monitor = HealthMonitor("http://127.0.0.1:1", interval=5.0)
    assert monitor.next_delay() == 5.0
    for failures, expected in [(1, 1), (2, 2), (3, 4), (8, 60), (20, 60)]:
        monitor._counter.consecutive_failures = failures
        assert monitor.next_delay() == expected


async def test_wait_until_ready_waits_for_a_late_server() -> None:
    port = free_port()
    monitor = HealthMonitor(f"http://127.0.0.1:{port}", timeout=1)

    async def late_server() -> None:
        await asyncio.sleep(0.4)
        async with serve(recorded_stats_app(), port):
            await asyncio.sleep(3)

    task = asyncio.create_task(late_server())
    try:
        stats = await monitor.wait_until_ready(5, poll=0.05)
        assert stats.comfyui_version == "0.3.64"
        assert monitor.state is HealthState.HEALTHY
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_wait_until_ready_times_out() -> None:
    monitor = HealthMonitor(f"http://127.0.0.1:{free_port()}", timeout=0.2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ServerTimeout, match=r"within 0\.5 s") as info:
        await monitor.wait_until_ready(0.5, poll=0.05)
    assert loop.time() - began < 2
    assert info.value.where is not None and info.value.where.endswith("/system_stats")
