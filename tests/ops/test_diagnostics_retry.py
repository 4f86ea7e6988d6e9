"""Strategies applied for real: retries against a loopback server, fallbacks, aborts, history."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from storycore.diagnostics import (
    Diagnosis,
    DiagnosticContext,
    DiagnosticHistory,
    RetryPolicy,
    Strategy,
    classify,
    diagnosis_of,
    run_with_retry,
)
from storycore.errors import PromptRejected, ServerUnreachable
from tests._recordings import recording_text

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.0, deadline=5.0)


class FlakyServer:
    """A loopback HTTP server: ``/system_stats`` drops the connection in the middle of the body
    ``failures`` times, then answers; ``/prompt`` answers the recorded 400 for a missing
    checkpoint. (A drop before the headers would be retried by aiohttp itself.)"""

    def __init__(self, failures: int, rejection: dict[str, Any]) -> None:
        self.failures = failures
        self.rejection = rejection
        self.calls: dict[str, int] = {"stats": 0, "prompt": 0}
        self.url = ""

    async def stats(self, request: web.Request) -> web.StreamResponse:
        self.calls["stats"] += 1
        if self.calls["stats"] <= self.failures:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 1000
            await response.prepare(request)
            await response.write(b'{"system": ')
            assert request.transport is not None
            request.transport.close()  # a real connection lost mid-body
            return response
        return web.json_response({"system": {"comfyui_version": "0.3.64"}, "devices": []})

    async def prompt(self, request: web.Request) -> web.Response:
        self.calls["prompt"] += 1
        return web.json_response(self.rejection, status=400)


@pytest.fixture
def rejection() -> dict[str, Any]:
    recorded = json.loads(recording_text("validation_errors.json"))
    body: dict[str, Any] = recorded["checkpoint_not_in_list"]["body"]
    return body


async def _serve(server: FlakyServer) -> AsyncIterator[FlakyServer]:
    app = web.Application()
    app.router.add_get("/system_stats", server.stats)
    app.router.add_post("/prompt", server.prompt)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    port = sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def flaky_once(rejection: dict[str, Any]) -> AsyncIterator[FlakyServer]:
    async for server in _serve(FlakyServer(1, rejection)):
        yield server


@pytest.fixture
async def always_down(rejection: dict[str, Any]) -> AsyncIterator[FlakyServer]:
    async for server in _serve(FlakyServer(10_000, rejection)):
        yield server


async def _get_stats(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=2)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/system_stats") as resp,
        ):
            data: dict[str, Any] = await resp.json()
            return data
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise ServerUnreachable(f"connection dropped: {exc}", where=url) from exc


async def test_network_error_succeeds_on_second_try(
    flaky_once: FlakyServer, tmp_path: Path
) -> None:
    history = DiagnosticHistory(tmp_path / "state")
    seen: list[tuple[str, int]] = []
    result = await run_with_retry(
        lambda: _get_stats(flaky_once.url),
        FAST,
        history=history,
        on_diagnosis=lambda d, attempt: seen.append((d.code, attempt)),
    )
    assert result["system"]["comfyui_version"] == "0.3.64"
    assert flaky_once.calls["stats"] == 2
    assert seen == [("unreachable", 1)]
    lines = (tmp_path / "state" / "diagnostics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["strategy"] for line in lines] == ["retry"]


async def test_raw_aiohttp_errors_are_retried_too(flaky_once: FlakyServer) -> None:
    async def raw() -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"{flaky_once.url}/system_stats") as resp,
        ):
            await resp.json()
            return resp.status

    assert await run_with_retry(raw, FAST) == 200
    assert flaky_once.calls["stats"] == 2


async def test_missing_model_aborts_with_the_suggestion(flaky_once: FlakyServer) -> None:
    async def submit() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.post(f"{flaky_once.url}/prompt", json={"prompt": {}}) as resp,
        ):
            body: dict[str, Any] = await resp.json()
        if resp.status == 400:
            raise PromptRejected(
                "ComfyUI rejected the graph",
                where=f"{flaky_once.url}/prompt",
                error=body["error"],
                node_errors=body["node_errors"],
            )
        return body

    ctx = DiagnosticContext(installed_models={"checkpoints": ["tiny-random-sd15.safetensors"]})
    with pytest.raises(PromptRejected) as caught:
        await run_with_retry(submit, FAST, lambda exc: classify(exc, ctx))
    assert flaky_once.calls["prompt"] == 1  # never retried
    diagnosis = diagnosis_of(caught.value)
    assert diagnosis is not None
    assert diagnosis.strategy is Strategy.ABORT
    assert diagnosis.suggestion == (
        "checkpoint `nope.safetensors` is not installed; installed: `tiny-random-sd15.safetensors`"
    )


async def test_retries_are_bounded_then_fail_over(always_down: FlakyServer) -> None:
    ctx = DiagnosticContext(can_failover=True)
    used: list[Diagnosis] = []

    async def other_backend(diagnosis: Diagnosis) -> dict[str, Any]:
        used.append(diagnosis)
        return {"backend": "other"}

    result = await run_with_retry(
        lambda: _get_stats(always_down.url),
        FAST,
        lambda exc: classify(exc, ctx),
        fallbacks={Strategy.FAILOVER: other_backend},
    )
    assert result == {"backend": "other"}
    assert always_down.calls["stats"] == 4  # 1 try + retry_limit 3, within max_attempts 4
    assert [d.code for d in used] == ["unreachable"]


async def test_without_a_fallback_the_error_is_raised(always_down: FlakyServer) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0.0)
    with pytest.raises(ServerUnreachable) as caught:
        await run_with_retry(lambda: _get_stats(always_down.url), policy)
    assert always_down.calls["stats"] == 2
    assert diagnosis_of(caught.value) is not None


async def test_websocket_failure_switches_to_polling() -> None:
    async def follow_ws() -> str:
        raise ServerUnreachable("socket closed", where="ws://127.0.0.1:9/ws?clientId=x")

    async def poll(diagnosis: Diagnosis) -> str:
        return f"polled after {diagnosis.code}"

    assert await run_with_retry(follow_ws, FAST, fallbacks={Strategy.POLL: poll}) == (
        "polled after websocket_failed"
    )


async def test_deadline_bounds_the_whole_run() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ServerUnreachable("refused")

    policy = RetryPolicy(max_attempts=50, base_delay=0.2, max_delay=0.2, jitter=0.0, deadline=0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ServerUnreachable):
        await run_with_retry(down, policy, lambda exc: _unbounded(classify(exc)))
    assert loop.time() - start < 1.0  # 50 attempts would take 10 s
    assert 2 <= calls <= 3


def _unbounded(diagnosis: Diagnosis) -> Diagnosis:
    from dataclasses import replace

    return replace(diagnosis, retry_limit=100)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=3.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(base_delay=1.0, jitter=0.5, max_delay=10.0)
    assert all(1.0 <= jittered.delay(1) <= 1.5 for _ in range(50))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_history_is_bounded_and_survives_concurrent_writers(tmp_path: Path) -> None:
    history = DiagnosticHistory(tmp_path, maxlen=20, max_bytes=4096)
    diagnosis = classify(ServerUnreachable("refused", where="http://127.0.0.1:1"))

    def write(n: int) -> None:
        for _ in range(n):
            history.record(diagnosis)

    threads = [threading.Thread(target=write, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(history) == 20
    path = tmp_path / "diagnostics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert 20 <= len(lines) < 40  # compacted: 100 records were written
    assert all(json.loads(line)["code"] == "unreachable" for line in lines)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"broken": \n')
    reloaded = DiagnosticHistory(tmp_path, maxlen=5).load()
    assert len(reloaded) == 5
    assert reloaded[-1].suggestion == diagnosis.suggestion


def test_project_history_lives_in_the_state_folder(tmp_path: Path) -> None:
    history = DiagnosticHistory.for_project(tmp_path, maxlen=3)
    history.record(classify(ServerUnreachable("refused")))
    assert (tmp_path / ".storycore" / "diagnostics.jsonl").is_file()
    assert len(DiagnosticHistory.for_project(tmp_path).load()) == 1
