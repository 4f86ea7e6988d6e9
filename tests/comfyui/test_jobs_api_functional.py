"""The jobs API of today's ComfyUI through ComfyUIClient: job records, the list and its
filters, cancelling (with the 0.3.64 fallback), and prompt ids. Inline servers answer exactly
what comfy_execution/jobs.py @ dfb874a6 (normalize_history_item, normalize_queue_item) and
server.py @ 5e14d797 (get_jobs, get_job_by_id, cancel_job_by_id, post_prompt) build; the emulator's
two profiles are the second check."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from storycore.comfyui import CancelOutcome, ClientTimeouts, ComfyUIClient, PromptStatus
from storycore.comfyui._jobs_api import (
    MAX_JOBS,
    JobStatus,
    check_prompt_id,
    jobs_query,
    parse_job,
    parse_job_page,
)
from storycore.errors import ComfyUIError, PromptRejected, ServerResponseError

Serve = Callable[[web.Application], Awaitable[str]]
FAST = ClientTimeouts(connect=2, read=2, request_deadline=5)
DONE, FAILED, PENDING = (str(uuid.uuid4()) for _ in range(3))
IMAGE = {"filename": "storycore_00001_.png", "subfolder": "board/shot_01", "type": "output"}

# normalize_history_item(include_outputs=True) of a successful prompt
DONE_JOB: dict[str, Any] = {
    "id": DONE,
    "status": "completed",
    "priority": 3,
    "create_time": 1764650000123,
    "execution_start_time": 1764650000200,
    "execution_end_time": 1764650004200,
    "outputs_count": 1,
    "previewable_outputs_count": 1,
    "preview_output": {**IMAGE, "nodeId": "9", "mediaType": "images"},
    "outputs": {"9": {"images": [IMAGE]}},
    "execution_status": {"status_str": "success", "completed": True, "messages": []},
    "workflow": {"prompt": {}, "extra_data": {"create_time": 1764650000123}},
}
# ... of a prompt whose node raised (execution_error is that event's data)
FAILED_JOB: dict[str, Any] = {
    "id": FAILED,
    "status": "failed",
    "priority": 4,
    "create_time": 1764650000999,
    "execution_error": {
        "prompt_id": FAILED,
        "node_id": "3",
        "node_type": "KSampler",
        "executed": ["4"],
        "exception_message": "CUDA out of memory",
        "exception_type": "torch.OutOfMemoryError",
        "traceback": ["..."],
        "current_inputs": {},
        "current_outputs": {},
        "timestamp": 1764650001999,
    },
    "outputs_count": 0,
    "previewable_outputs_count": 0,
    "outputs": {},
    "execution_status": {"status_str": "error", "completed": False, "messages": []},
}
# normalize_queue_item(include_workflow=True) of a pending prompt
PENDING_JOB = {
    "id": PENDING,
    "status": "pending",
    "priority": 5,
    "create_time": 1764650002000,
    "outputs_count": 0,
    "previewable_outputs_count": 0,
    "workflow": {"prompt": {}, "extra_data": {}},
}


def jobs_app(seen: list[tuple[str, str, Any]]) -> web.Application:
    jobs = {j["id"]: j for j in (DONE_JOB, FAILED_JOB, PENDING_JOB)}

    async def one(request: web.Request) -> web.StreamResponse:
        seen.append(("GET", request.path, None))
        job = jobs.get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    async def listing(request: web.Request) -> web.StreamResponse:
        seen.append(("GET", request.path, dict(request.query)))
        wanted = request.query.get("status", "").split(",")
        found = [
            {k: v for k, v in j.items() if k not in ("outputs", "workflow", "execution_status")}
            for j in jobs.values()
            if j["status"] in wanted
        ]
        page = {"offset": 0, "limit": 2, "total": len(found), "has_more": False}
        return web.json_response({"jobs": found, "pagination": page})

    async def cancel(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        seen.append(("POST", request.path, None))
        cancelled = job_id in jobs and jobs[job_id]["status"] == "pending"
        if cancelled:
            del jobs[job_id]  # dequeued: the server no longer knows it
        return web.json_response({"cancelled": cancelled})

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.json_response({"system": {"comfyui_version": "0.4.2"}, "devices": []})

    app = web.Application()
    app.router.add_get("/system_stats", stats)
    app.router.add_get("/api/jobs", listing)
    app.router.add_get("/api/jobs/{job_id}", one)
    app.router.add_post("/api/jobs/{job_id}/cancel", cancel)
    return app


async def test_job_records_of_each_state(serve: Serve) -> None:
    seen: list[tuple[str, str, Any]] = []
    url = await serve(jobs_app(seen))
    async with ComfyUIClient(url, FAST) as client:
        done = await client.job(DONE)
        failed = await client.job(FAILED)
        pending = await client.job(PENDING)
        unknown = await client.job(str(uuid.uuid4()))
        not_uuid = await client.job("../../system_stats")
    assert done is not None and done.status is JobStatus.COMPLETED and done.finished
    assert done.prompt_status is PromptStatus.SUCCESS and done.has_outputs
    assert done.create_time == 1764650000123 and done.execution_end_time == 1764650004200
    result = done.result()
    assert [f.filename for f in result.files] == ["storycore_00001_.png"]
    assert result.files[0].subfolder == "board/shot_01" and result.via == "jobs_api"
    assert failed is not None and failed.prompt_status is PromptStatus.ERROR
    assert failed.error is not None and failed.error.node_type == "KSampler"
    assert failed.error.describe() == (
        "node 3 (KSampler) failed: torch.OutOfMemoryError: CUDA out of memory"
    )
    assert pending is not None and pending.queued and not pending.finished
    assert unknown is None
    assert not_uuid is None  # no request: no server that checks ids can know it
    assert len(seen) == 4 and all(path.startswith("/api/jobs/") for _, path, _ in seen)


async def test_jobs_list_filters(serve: Serve) -> None:
    seen: list[tuple[str, str, Any]] = []
    url = await serve(jobs_app(seen))
    async with ComfyUIClient(url, FAST) as client:
        page = await client.jobs(status=["pending", "in_progress"], limit=2, sort_order="asc")
    assert [j.id for j in page.jobs] == [PENDING] and page.total == 1 and not page.has_more
    assert not page.jobs[0].has_outputs
    query = seen[0][2]
    assert query["status"] == "pending,in_progress" and query["limit"] == "2"
    assert query["sort_order"] == "asc" and query["sort_by"] == "created_at"


def test_jobs_query_refuses_what_the_server_refuses() -> None:
    with pytest.raises(ValueError, match="unknown job status"):
        jobs_query(status=["running"])
    with pytest.raises(ValueError, match="sort_by"):
        jobs_query(sort_by="name")
    with pytest.raises(ValueError, match="limit"):
        jobs_query(limit=0)
    assert jobs_query(limit=10**9)["limit"] == str(MAX_JOBS)


def test_hostile_job_bodies() -> None:
    assert parse_job(["not", "a", "job"]) is None and parse_job({"status": "completed"}) is None
    odd = parse_job(
        {
            "id": "x" * 10_000,
            "status": "exploded",
            "create_time": float("inf"),
            "priority": "high",
            "execution_error": "not a dict",
            "outputs": {str(n): {"images": [IMAGE]} for n in range(5000)},
            "workflow_id": {"nested": True},
        }
    )
    assert odd is not None and odd.status is JobStatus.UNKNOWN and len(odd.id) == 200
    assert odd.create_time is None and odd.priority is None and odd.error is None
    assert len(odd.outputs) == 1000 and odd.workflow_id is None
    page = parse_job_page({"jobs": [{"id": str(n)} for n in range(5000)], "pagination": []})
    assert len(page.jobs) == MAX_JOBS and page.total is None and page.offset == 0


async def test_cancel_uses_the_jobs_api(serve: Serve) -> None:
    seen: list[tuple[str, str, Any]] = []
    url = await serve(jobs_app(seen))
    async with ComfyUIClient(url, FAST) as client:
        assert await client.cancel(PENDING) is CancelOutcome.DELETED
        assert await client.cancel(DONE) is CancelOutcome.NOT_FOUND  # finished: a no-op
    posts = [path for method, path, _ in seen if method == "POST"]
    assert posts == [f"/api/jobs/{PENDING}/cancel", f"/api/jobs/{DONE}/cancel"]
    assert not any(path == "/queue" for _, path, _ in seen)


async def test_cancel_does_not_wait_for_a_sick_system_stats(serve: Serve) -> None:
    """A panel fails over because its server stopped answering /system_stats; cancelling its
    prompt there must not start by asking /system_stats (which never answers)."""
    seen: list[tuple[str, str, Any]] = []
    app = jobs_app(seen)
    stuck = []

    async def sick(request: web.Request) -> web.StreamResponse:
        stuck.append(request.path)
        await asyncio.sleep(60)
        return web.json_response({})

    sick_app = web.Application()
    sick_app.router.add_get("/system_stats", sick)
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path != "/system_stats":
            for route in resource:
                sick_app.router.add_route(route.method, str(path), route.handler)
    url = await serve(sick_app)
    async with ComfyUIClient(url, FAST) as client, asyncio.timeout(3):
        assert await client.cancel(PENDING) is CancelOutcome.DELETED
    assert stuck == []
    assert ("POST", f"/api/jobs/{PENDING}/cancel", None) in seen


def queue_app(
    seen: list[tuple[str, str, Any]], running: str, cancel_route: bool
) -> web.Application:
    """0.3.64: /queue, /interrupt; with ``cancel_route`` a GET /api/jobs but a 405 on cancel."""
    state = {"running": [[0, running, {}, {}, []]]}

    async def queue(request: web.Request) -> web.StreamResponse:
        seen.append(("GET", request.path, None))
        return web.json_response({"queue_running": state["running"], "queue_pending": []})

    async def interrupt(request: web.Request) -> web.StreamResponse:
        seen.append(("POST", request.path, await request.json()))
        state["running"] = []
        return web.Response()

    async def listing(request: web.Request) -> web.StreamResponse:
        if not cancel_route:
            raise web.HTTPNotFound()
        page = {"offset": 0, "limit": 1, "total": 0, "has_more": False}
        return web.json_response({"jobs": [], "pagination": page})

    async def no_cancel(request: web.Request) -> web.StreamResponse:
        seen.append(("POST", request.path, None))
        raise web.HTTPMethodNotAllowed("POST", ["GET"])

    app = web.Application()
    app.router.add_get("/queue", queue)
    app.router.add_post("/interrupt", interrupt)
    app.router.add_get("/api/jobs", listing)
    app.router.add_route("*", "/api/jobs/{job_id}/cancel", no_cancel)
    return app


@pytest.mark.parametrize("jobs_list", [False, True])
async def test_cancel_falls_back_to_queue_and_interrupt(serve: Serve, jobs_list: bool) -> None:
    seen: list[tuple[str, str, Any]] = []
    running = str(uuid.uuid4())
    url = await serve(queue_app(seen, running, jobs_list))
    async with ComfyUIClient(url, FAST) as client:
        assert await client.cancel(running) is CancelOutcome.INTERRUPTED
        assert (await client.capabilities()).jobs_api is jobs_list
    assert ("POST", "/interrupt", {"prompt_id": running}) in seen
    tried_jobs_cancel = any(path.endswith("/cancel") for _, path, _ in seen)
    assert tried_jobs_cancel is jobs_list


def test_prompt_id_rules() -> None:
    canonical = str(uuid.uuid4())
    assert check_prompt_id(canonical) == canonical
    assert check_prompt_id("sc-1") == "sc-1"  # 0.3.64 takes any string
    with pytest.raises(ComfyUIError, match="canonical lowercase") as info:
        check_prompt_id(canonical.upper())
    assert canonical in info.value.message  # how to write it
    with pytest.raises(ComfyUIError, match="not a UUID"):
        check_prompt_id("sc-1", current_server=True)


async def test_emulator_current_refuses_uppercase_and_takes_ours() -> None:
    """The server's own rule (400 invalid_prompt_id), then ours: refused before sending, and
    the ids StoryCore chooses are accepted."""
    from storycore.emulator import Emulator, EmulatorOptions

    graph = _one_node_graph()
    upper = str(uuid.uuid4()).upper()
    async with (
        Emulator(EmulatorOptions(profile="current")) as emu,
        ComfyUIClient(emu.url, FAST) as client,
    ):
        raw = await client.transport.request(
            "POST", "/prompt", json_body={"prompt": graph, "prompt_id": upper}
        )
        assert raw.status == 400
        body = json.loads(raw.body)
        assert body["error"]["type"] == "invalid_prompt_id" and body["node_errors"] == {}
        with pytest.raises(ComfyUIError, match="canonical lowercase"):
            await client.submit(graph, prompt_id=upper)
        ours = await client.submit(graph)
        assert uuid.UUID(ours.prompt_id) and str(uuid.UUID(ours.prompt_id)) == ours.prompt_id
        chosen = str(uuid.uuid4())
        assert (await client.submit(graph, prompt_id=chosen)).prompt_id == chosen
        job = await client.job(chosen)
        assert job is not None and job.id == chosen
        # once the client knows it is today's server, a non-UUID id is refused before sending
        assert (await client.capabilities()).jobs_api
        with pytest.raises(ComfyUIError, match="not a UUID"):
            await client.submit(graph, prompt_id="sc-1")


async def test_a_refused_prompt_id_names_what_to_do(serve: Serve) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        error = {
            "type": "invalid_prompt_id",
            "message": "prompt_id must be a valid UUID",
            "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
            "omit it to let the server generate one",
            "extra_info": {},
        }
        return web.json_response({"error": error, "node_errors": {}}, status=400)

    app = web.Application()
    app.router.add_post("/prompt", refuse)
    url = await serve(app)
    async with ComfyUIClient(url, FAST) as client:
        with pytest.raises(PromptRejected) as info:
            await client.submit(_one_node_graph(), prompt_id="sc-1")
    assert "prompt_id must be a valid UUID" in info.value.message
    assert info.value.hint is not None and "leave the prompt id out" in info.value.hint


async def test_emulator_old_profile_has_no_jobs_api() -> None:
    from storycore.emulator import Emulator, EmulatorOptions

    async with (
        Emulator(EmulatorOptions(profile="0.3.64")) as emu,
        ComfyUIClient(emu.url, FAST) as client,
    ):
        assert not (await client.capabilities()).jobs_api
        with pytest.raises(ServerResponseError):
            await client.jobs()
        submitted = await client.submit(_one_node_graph(), prompt_id="sc-1")  # 0.3.64 takes it
        assert submitted.prompt_id == "sc-1"
        assert await client.cancel("sc-1") in (CancelOutcome.INTERRUPTED, CancelOutcome.NOT_FOUND)


def _one_node_graph() -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


async def test_cancel_on_the_emulators_jobs_api() -> None:
    """A pending prompt is dequeued (the server forgets it), the running one interrupted (its
    job ends ``cancelled``), a finished one is a no-op; the queue shows neither afterwards."""
    import asyncio

    from storycore.emulator import Emulator, EmulatorOptions

    async with (
        Emulator(EmulatorOptions(profile="current", node_seconds=0.5)) as emu,
        ComfyUIClient(emu.url, FAST) as client,
    ):
        running = (await client.submit(_one_node_graph())).prompt_id
        pending = (await client.submit(_one_node_graph())).prompt_id
        async with asyncio.timeout(10):
            while True:
                if (await client.queue()).is_running(running):
                    break
                await asyncio.sleep(0.02)
        assert await client.cancel(pending) is CancelOutcome.DELETED
        assert await client.job(pending) is None
        assert await client.cancel(running) is CancelOutcome.INTERRUPTED
        async with asyncio.timeout(10):
            while True:
                job = await client.job(running)
                if job is None or job.finished:
                    break
                await asyncio.sleep(0.02)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.prompt_status is PromptStatus.INTERRUPTED
        assert await client.cancel(running) is CancelOutcome.NOT_FOUND  # already over
        state = await client.queue()
        assert not state.contains(running) and not state.contains(pending)
