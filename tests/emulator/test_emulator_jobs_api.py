"""``/api/jobs`` of the ``current`` profile over loopback: records, filters, sort, pagination,
error bodies and cancel, as server.py @ 5e14d797 and comfy_execution/jobs.py @ dfb874a6 do."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from storycore.emulator import Emulator

from ._support import trivial_prompt

LIST_KEYS = {
    "id",
    "status",
    "priority",
    "create_time",
    "execution_start_time",
    "execution_end_time",
    "outputs_count",
    "previewable_outputs_count",
    "preview_output",
    "workflow_id",
}


async def _post(
    http: aiohttp.ClientSession, emu: Emulator, workflow_id: str | None = None, **body: Any
) -> str:
    pid = str(uuid.uuid4())
    extra: dict[str, Any] = {}
    if workflow_id is not None:
        extra["extra_pnginfo"] = {"workflow": {"id": workflow_id, "nodes": []}}
    payload = {"prompt": trivial_prompt(), "prompt_id": pid, "extra_data": extra, **body}
    async with http.post(f"{emu.url}/prompt", json=payload) as r:
        assert r.status == 200, await r.text()
    return pid


async def _until(check: Any, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {limit_s} s: {check}")


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def _post_json(http: aiohttp.ClientSession, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json()


def _running_ids(emu: Emulator) -> list[str]:
    return [item[1] for item in emu.executor.queue_snapshot()[0]]


async def _three_done(http: aiohttp.ClientSession, emu: Emulator) -> list[str]:
    pids = []
    for wf in ("wf-a", "wf-b", "wf-a"):
        pid = await _post(http, emu, workflow_id=wf)
        await _until(lambda p=pid: p in emu.executor.history)  # type: ignore[misc]
        await asyncio.sleep(0.003)  # distinct create_time (ms)
        pids.append(pid)
    return pids


async def test_list_records_sort_filter_and_pagination(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    p1, p2, p3 = await _three_done(http, emu_current)
    base = f"{emu_current.url}/api/jobs"
    status, body = await _get(http, base)
    assert status == 200
    assert [j["id"] for j in body["jobs"]] == [p3, p2, p1]  # newest first
    assert body["pagination"] == {"offset": 0, "limit": None, "total": 3, "has_more": False}
    job = body["jobs"][0]
    assert set(job) == LIST_KEYS
    assert job["status"] == "completed" and job["workflow_id"] == "wf-a"
    assert job["outputs_count"] == job["previewable_outputs_count"] == 1
    assert job["execution_end_time"] >= job["execution_start_time"] >= job["create_time"]
    preview = job["preview_output"]
    assert preview["nodeId"] == "2" and preview["mediaType"] == "images"
    assert preview["type"] == "output" and preview["filename"].endswith(".png")

    _, asc = await _get(http, f"{base}?sort_order=ASC")
    assert [j["id"] for j in asc["jobs"]] == [p1, p2, p3]
    _, by_duration = await _get(http, f"{base}?sort_by=execution_duration")
    assert sorted(j["id"] for j in by_duration["jobs"]) == sorted([p1, p2, p3])

    _, page = await _get(http, f"{base}?limit=2")
    assert [j["id"] for j in page["jobs"]] == [p3, p2]
    assert page["pagination"] == {"offset": 0, "limit": 2, "total": 3, "has_more": True}
    _, page = await _get(http, f"{base}?limit=2&offset=2")
    assert [j["id"] for j in page["jobs"]] == [p1]
    assert page["pagination"] == {"offset": 2, "limit": 2, "total": 3, "has_more": False}
    _, page = await _get(http, f"{base}?offset=-4")
    assert page["pagination"]["offset"] == 0 and len(page["jobs"]) == 3

    _, wf = await _get(http, f"{base}?workflow_id=wf-a")
    assert [j["id"] for j in wf["jobs"]] == [p3, p1]
    _, failed = await _get(http, f"{base}?status=failed")
    assert failed["jobs"] == [] and failed["pagination"]["total"] == 0
    _, mixed = await _get(http, f"{base}?status=%20Completed%20,pending,")
    assert mixed["pagination"]["total"] == 3
    # server.py declares "/api/jobs", so the /api-prefixed copy is /api/api/jobs.
    status, again = await _get(http, f"{emu_current.url}/api/api/jobs?limit=1")
    assert status == 200 and [j["id"] for j in again["jobs"]] == [p3]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (
            "status=done,pending,later",
            "Invalid status value(s): done, later. "
            "Valid values: pending, in_progress, completed, failed, cancelled",
        ),
        ("sort_by=name", "sort_by must be 'created_at' or 'execution_duration'"),
        ("sort_order=up", "sort_order must be 'asc' or 'desc'"),
        ("limit=0", "limit must be a positive integer"),
        ("limit=-3", "limit must be a positive integer"),
        ("limit=ten", "limit must be an integer"),
        ("limit=", "limit must be an integer"),
        ("offset=1.5", "offset must be an integer"),
    ],
)
async def test_bad_parameters_get_the_source_error_bodies(
    emu_current: Emulator, http: aiohttp.ClientSession, query: str, error: str
) -> None:
    async with http.get(f"{emu_current.url}/api/jobs?{query}") as r:
        assert r.status == 400
        assert r.content_type == "application/json"
        assert await r.json() == {"error": error}


async def test_one_job_in_full_and_unknown_ids(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    pid = await _post(http, emu_current, workflow_id="wf-1", client_id="c-1")
    await _until(lambda: pid in emu_current.executor.history)
    status, job = await _get(http, f"{emu_current.url}/api/jobs/{pid}")
    assert status == 200
    assert set(job) == LIST_KEYS | {"outputs", "execution_status", "workflow"}
    assert job["outputs"]["2"]["images"][0]["filename"] == job["preview_output"]["filename"]
    assert job["execution_status"]["status_str"] == "success"
    assert job["execution_status"]["completed"] is True
    assert job["workflow"]["prompt"] == trivial_prompt()
    extra = job["workflow"]["extra_data"]
    assert extra["client_id"] == "c-1" and extra["create_time"] == job["create_time"]

    status, body = await _get(http, f"{emu_current.url}/api/jobs/{uuid.uuid4()}")
    assert (status, body) == (404, {"error": "Job not found"})
    status, body = await _get(http, f"{emu_current.url}/api/jobs/not-even-a-uuid")
    assert (status, body) == (404, {"error": "Job not found"})


async def test_a_failed_job_carries_its_execution_error(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    emu_current.faults.fail_node("EmptyImage", "no paint left")
    pid = await _post(http, emu_current)
    await _until(lambda: pid in emu_current.executor.history)
    _, body = await _get(http, f"{emu_current.url}/api/jobs?status=failed")
    [job] = body["jobs"]
    assert job["id"] == pid and job["status"] == "failed"
    assert job["outputs_count"] == 0 and "preview_output" not in job
    error = job["execution_error"]
    assert error["prompt_id"] == pid and error["node_type"] == "EmptyImage"
    assert error["exception_message"].startswith("no paint left")
    assert error["timestamp"] == job["execution_end_time"]


async def test_running_and_pending_jobs_and_cancel(
    emu_slow_current: Emulator, http: aiohttp.ClientSession
) -> None:
    emu = emu_slow_current
    p1 = await _post(http, emu)
    await _until(lambda: _running_ids(emu) == [p1])
    p2 = await _post(http, emu, workflow_id="wf-2")
    p3 = await _post(http, emu)
    base = f"{emu.url}/api/jobs"

    _, running = await _get(http, f"{base}?status=in_progress")
    [job] = running["jobs"]
    assert job["id"] == p1 and job["status"] == "in_progress"
    assert set(job) == {
        "id",
        "status",
        "priority",
        "create_time",
        "outputs_count",
        "previewable_outputs_count",
    }
    assert job["outputs_count"] == job["previewable_outputs_count"] == 0
    status, pending = await _get(http, f"{base}/{p2}")
    assert status == 200 and pending["status"] == "pending" and pending["workflow_id"] == "wf-2"
    assert pending["workflow"]["prompt"] == trivial_prompt()

    # A pending job is dequeued; it is then unknown (never ran, no history entry).
    assert await _post_json(http, f"{base}/{p2}/cancel") == (200, {"cancelled": True})
    assert p2 not in [item[1] for item in emu.executor.queue_snapshot()[1]]
    assert (await _get(http, f"{base}/{p2}"))[0] == 404
    # The running job is interrupted and ends as "cancelled".
    assert await _post_json(http, f"{base}/{p1}/cancel") == (200, {"cancelled": True})
    await _until(lambda: p1 in emu.executor.history)
    _, done = await _get(http, f"{base}/{p1}")
    assert done["status"] == "cancelled" and "execution_error" not in done
    # Finished and unknown ids are no-ops, not errors.
    assert await _post_json(http, f"{base}/{p1}/cancel") == (200, {"cancelled": False})
    assert await _post_json(http, f"{base}/{uuid.uuid4()}/cancel") == (200, {"cancelled": False})
    await _until(lambda: p3 in emu.executor.history)
    _, p3_job = await _get(http, f"{base}/{p3}")
    assert p3_job["status"] == "completed"


async def test_batch_cancel_checks_its_body_and_ids(
    emu_slow_current: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emu_slow_current.url}/api/jobs/cancel"
    async with http.post(url, data=b"{not json") as r:
        assert (r.status, await r.json()) == (400, {"error": "Request body must be valid JSON"})
    assert await _post_json(http, url, {"job_ids": "x"}) == (
        400,
        {"error": "job_ids must be a list"},
    )
    assert await _post_json(http, url, ["a"]) == (400, {"error": "job_ids must be a list"})
    good = str(uuid.uuid4())
    status, body = await _post_json(http, url, {"job_ids": ["ABC", 5, good.upper(), good]})
    assert status == 400
    assert body == {
        "error": "job_ids contains invalid id(s)",
        "invalid_ids": ["ABC", "5", good.upper()],
    }
    assert await _post_json(http, url, {"job_ids": []}) == (200, {"cancelled": False})

    p1 = await _post(http, emu_slow_current)
    await _until(lambda: _running_ids(emu_slow_current) == [p1])
    p2 = await _post(http, emu_slow_current)
    p3 = await _post(http, emu_slow_current)
    assert await _post_json(http, url, {"job_ids": [p2, p3, good]}) == (200, {"cancelled": True})
    assert emu_slow_current.executor.queue_snapshot()[1] == []


async def test_the_recorded_profile_has_no_jobs_api(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    for path in ("/api/jobs", f"/api/jobs/{uuid.uuid4()}"):
        async with http.get(f"{emu.url}{path}") as r:
            assert r.status == 404
    async with http.post(f"{emu.url}/api/jobs/cancel", json={"job_ids": []}) as r:
        assert r.status in (404, 405)
