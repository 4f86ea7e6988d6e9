"""PromptTracker + ComfyUIClient against the emulator over loopback, with its fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from storycore.comfyui import (
    CancelOutcome,
    ClientTimeouts,
    ComfyUIClient,
    OverallProgress,
    PromptCompleted,
    PromptHandle,
    PromptQueued,
    PromptStatus,
    PromptTracker,
    ServerAddress,
    TrackerEvent,
)
from storycore.comfyui import events as ev
from storycore.emulator import Emulator, EmulatorOptions
from storycore.errors import (
    ExecutionFailed,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    ServerResponseError,
    ServerTimeout,
    UnsafePathError,
)

FAST = ClientTimeouts(
    connect=2,
    read=5,
    prompt_deadline=20,
    idle_timeout=10,
    watchdog=0.3,
    lost_grace=0.3,
    poll_interval=0.03,
    reconnect_initial=0.01,
    reconnect_max=0.1,
)


def image_graph(prefix: str = "sc", color: int = 0, blur_nodes: int = 0) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
        }
    }
    last = "1"
    for index in range(blur_nodes):
        node = str(10 + index)
        graph[node] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [last, 0], "blur_radius": 1, "sigma": 1.0},
        }
        last = node
    graph["99"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [last, 0], "filename_prefix": prefix},
    }
    return graph


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorOptions(step_seconds=0.01)) as emulator:
        yield emulator


@pytest.fixture
async def slow_emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorOptions(node_seconds=0.15)) as emulator:
        yield emulator


async def collect(handle: PromptHandle) -> list[TrackerEvent]:
    async with asyncio.timeout(20):
        return [event async for event in handle.events()]


async def wait_for_event(handle: PromptHandle, kind: type[Any]) -> list[TrackerEvent]:
    """Consume events until one of ``kind`` arrives; return what was consumed."""
    seen: list[TrackerEvent] = []
    async with asyncio.timeout(10):
        async for event in handle.events():
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"stream ended before {kind.__name__}: {seen}")


async def test_success_events_progress_timings_outputs(emu: Emulator, tmp_path: Path) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        assert tracker.mode == "websocket"
        handle = await tracker.submit(
            image_graph(blur_nodes=2), extra_data={"extra_pnginfo": {"k": 1}}
        )
        events = await collect(handle)
        result = await handle.result()
        kinds = [type(e) for e in events]
        assert kinds.index(ev.ExecutionStarted) < kinds.index(ev.NodeExecuting)
        assert kinds.count(ev.ExecutionSuccess) == 1
        assert isinstance(events[-1], PromptCompleted) and events[-1].status == "success"
        assert sum(isinstance(e, PromptCompleted) for e in events) == 1
        fractions = [e.fraction for e in events if isinstance(e, OverallProgress)]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
        assert result.status is PromptStatus.SUCCESS and result.via == "websocket"
        assert set(result.timings) == {"1", "10", "11", "99"}
        assert all(t.duration is not None for t in result.timings.values())
        assert result.timings["99"].class_type == "SaveImage"
        (file,) = result.files
        assert file.filename.startswith("sc_") and file.node_id == "99"
        got = await client.download(file, tmp_path)
        expected = (emu.output_dir / file.subfolder / file.filename).read_bytes()
        assert got.sha256 == hashlib.sha256(expected).hexdigest()
    assert emu.executed_prompt_ids == [handle.prompt_id]


async def test_cached_resubmission(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        first = await (await tracker.submit(image_graph())).result(10)
        handle = await tracker.submit(image_graph())
        events = await collect(handle)
        second = await handle.result()
    cached = [e for e in events if isinstance(e, ev.CachedNodes)]
    assert cached and set(cached[0].nodes) == {"1", "99"}
    assert second.cached_nodes == ("1", "99")
    assert [f.filename for f in second.files] == [f.filename for f in first.files]
    assert all(t.cached for t in second.timings.values())


async def test_validation_errors_list_nodes(emu: Emulator) -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nope.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        with pytest.raises(PromptRejected) as info:
            await tracker.submit(graph, prompt_id="rejected-1")
        assert tracker.handle("rejected-1") is None
    text = str(info.value)
    assert "node 2 (EmptyImage) input 'width'" in text
    assert emu.executed_prompt_ids == []


async def test_execution_error(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        handle = await tracker.submit(image_graph(prefix="../evil"))
        events = await collect(handle)
        with pytest.raises(ExecutionFailed) as info:
            await handle.result()
    error = info.value
    assert (error.node_id, error.node_type, error.exception_type) == (
        "99",
        "SaveImage",
        "Exception",
    )
    assert "outside the output folder" in (error.exception_message or "")
    assert isinstance(events[-1], PromptCompleted) and events[-1].status == "error"
    assert sum(isinstance(e, ev.ExecutionError) for e in events) == 1


async def test_interrupt_running_and_cancel_pending(slow_emu: Emulator) -> None:
    async with ComfyUIClient(slow_emu.url, FAST) as client, PromptTracker(client) as tracker:
        running = await tracker.submit(image_graph(blur_nodes=20))
        pending = await tracker.submit(image_graph(color=5))
        await wait_for_event(running, ev.NodeExecuting)
        assert await tracker.cancel(pending.prompt_id) is CancelOutcome.DELETED
        with pytest.raises(PromptInterrupted):
            await pending.result(5)
        assert pending.status == "interrupted"
        assert await tracker.cancel(running.prompt_id) is CancelOutcome.INTERRUPTED
        with pytest.raises(PromptInterrupted):
            await running.result(5)
        # The server goes on with later work.
        after = await (await tracker.submit(image_graph(color=7))).result(10)
    assert after.status is PromptStatus.SUCCESS
    assert pending.prompt_id not in slow_emu.executed_prompt_ids


async def test_ws_dropped_mid_run_100_times() -> None:
    completions: list[str] = []
    via: list[str] = []
    async with (
        Emulator(EmulatorOptions(node_seconds=0.01)) as emu,
        ComfyUIClient(emu.url, FAST) as client,
        PromptTracker(client) as tracker,
    ):
        for index in range(100):
            handle = await tracker.submit(image_graph(color=index, blur_nodes=1))
            seen = await wait_for_event(handle, ev.NodeExecuting)
            assert emu.faults.drop_websockets() == 1
            async with asyncio.timeout(10):
                seen += [event async for event in handle.events()]
            done = [e for e in seen if isinstance(e, PromptCompleted)]
            assert len(done) == 1 and done[0].status == "success", seen
            result = await handle.result()
            assert result.files
            completions.append(result.prompt_id)
            via.append(result.via)
        assert tracker.ws_connections > 50
    assert len(completions) == len(set(completions)) == 100
    assert emu.executed_prompt_ids == completions
    # The drops really cut runs short: most completions had to come from polling.
    assert via.count("polling") >= 25


async def test_stalled_ws_falls_back_to_polling(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        emu.faults.stall_websockets(3.0)
        started = time.monotonic()
        handle = await tracker.submit(image_graph())
        result = await handle.result(10)
        assert time.monotonic() - started < 2.5
        assert result.via == "polling" and result.files
        await asyncio.sleep(0.1)
        events = await collect(handle)
    assert sum(isinstance(e, PromptCompleted) for e in events) == 1


async def test_queue_positions_can_be_turned_off(emu: Emulator) -> None:
    """A caller that keeps the queue fed itself saves the GET /queue after each submission."""
    emu.faults.fail_route("GET", "/queue", 500, times=1)  # armed until someone reads /queue
    async with (
        ComfyUIClient(emu.url, FAST) as client,
        PromptTracker(client, report_positions=False) as tracker,
    ):
        handle = await tracker.submit(image_graph())
        result = await handle.result(10)
        events = await collect(handle)
        with pytest.raises(ServerResponseError):
            await client.queue()  # the fault is still armed: the tracker never asked
    assert result.files and result.via == "websocket"
    assert not any(isinstance(e, PromptQueued) for e in events)


async def test_no_websocket_at_all(slow_emu: Emulator) -> None:
    slow_emu.faults.fail_route("GET", "/ws", 404, times=10_000)
    async with ComfyUIClient(slow_emu.url, FAST) as client, PromptTracker(client) as tracker:
        assert tracker.mode == "polling"
        handles = [await tracker.submit(image_graph(color=i)) for i in range(3)]
        results = [await h.result(10) for h in handles]
        streams = [await collect(h) for h in handles]
    assert all(r.via == "polling" and r.files for r in results)
    assert any(isinstance(e, PromptQueued) and e.position for e in streams[2])
    for events in streams:
        kinds = [type(e) for e in events]
        assert kinds.count(ev.ExecutionStarted) == 1 and kinds.count(ev.ExecutionSuccess) == 1
        assert kinds[-1] is PromptCompleted
    assert tracker.ws_connections == 0


async def test_polling_only_tracker(emu: Emulator) -> None:
    async with (
        ComfyUIClient(emu.url, FAST) as client,
        PromptTracker(client, use_websocket=False) as tracker,
    ):
        result = await (await tracker.submit(image_graph())).result(10)
    assert result.via == "polling"


async def test_lost_prompt_after_restart(slow_emu: Emulator) -> None:
    async with ComfyUIClient(slow_emu.url, FAST) as client, PromptTracker(client) as tracker:
        handle = await tracker.submit(image_graph(blur_nodes=30))
        await wait_for_event(handle, ev.NodeExecuting)
        await slow_emu.restart()
        with pytest.raises(PromptLost) as info:
            await handle.result(10)
        assert "submit" in str(info.value)
        # After the restart the tracker works again.
        again = await tracker.submit(image_graph())
        assert (await again.result(10)).files


async def test_deadline_and_idle_timeout(slow_emu: Emulator) -> None:
    async with ComfyUIClient(slow_emu.url, FAST) as client, PromptTracker(client) as tracker:
        handle = await tracker.submit(image_graph(blur_nodes=30), deadline=0.3)
        with pytest.raises(ServerTimeout, match="deadline"):
            await handle.result(5)
        await client.interrupt(handle.prompt_id)
    async with ComfyUIClient(slow_emu.url, FAST) as client, PromptTracker(client) as tracker:
        ghost = tracker.watch("never-submitted", idle_timeout=0.2)
        with pytest.raises(ServerTimeout, match="no sign"):
            await ghost.result(5)


async def test_pipelined_prompts_each_complete_once(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        handles = [await tracker.submit(image_graph(color=i, blur_nodes=1)) for i in range(8)]
        streams = await asyncio.gather(*(collect(h) for h in handles))
    for stream in streams:
        assert sum(isinstance(e, PromptCompleted) for e in stream) == 1
        assert stream[-1].status == "success"  # type: ignore[union-attr]
        assert all(getattr(e, "prompt_id", None) in (None, stream[-1].prompt_id) for e in stream)


async def test_watch_before_client_submit(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        handle = tracker.watch("engine-chosen-id", graph=image_graph())
        submitted = await client.submit(
            image_graph(), prompt_id="engine-chosen-id", client_id=client.client_id
        )
        tracker.mark_submitted(submitted.prompt_id, number=submitted.number)
        result = await handle.result(10)
    assert result.prompt_id == "engine-chosen-id" and result.via == "websocket"


async def test_upload_dedupe_then_load(emu: Emulator) -> None:
    png = emu.output_dir.parent / "probe.png"
    await asyncio.to_thread(_write_png, png)
    data = await asyncio.to_thread(png.read_bytes)
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        first = await client.upload_image(data)
        second = await client.upload_image(data)
        assert first is second
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": first.reference}},
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "up"},
            },
        }
        result = await (await tracker.submit(graph)).result(10)
    assert result.files
    assert await asyncio.to_thread(
        lambda: sorted(p.name for p in emu.input_dir.rglob("*.png"))
    ) == [first.name]


def _write_png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)


# ---------------------------------------------------------------- a proxy in front of the emulator
ProxyFactory = Callable[..., Awaitable[tuple[str, list[str]]]]


@pytest.fixture
async def proxy(emu: Emulator) -> AsyncIterator[ProxyFactory]:
    """A reverse proxy under ``/comfy`` that wants ``Authorization: Bearer let-me-in``."""
    import aiohttp

    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def start(
        *,
        hostile_names: bool = False,
        gateway_timeout_on_prompt: bool = False,
        drop_executed_of: str | None = None,
    ) -> tuple[str, list[str]]:
        log: list[str] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != "Bearer let-me-in":
                log.append(f"401 {request.path}")
                return web.Response(status=401, text="proxy: auth required")
            assert "Origin" not in request.headers
            log.append(f"ok {request.method} {request.path}")
            target = emu.url + request.rel_url.path.removeprefix("/comfy")
            query = dict(request.query)
            if request.path.endswith("/ws"):
                ws_url = emu.url.replace("http", "ws") + "/ws"
                return await _bridge(
                    request, session, ws_url, query, hostile_names, drop_executed_of
                )
            body = await request.read()
            async with session.request(
                request.method,
                target,
                params=query,
                data=body or None,
                headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
            ) as upstream:
                payload = await upstream.read()
                if gateway_timeout_on_prompt and request.path.endswith("/prompt"):
                    log.append(f"504 {request.method} {request.path}")
                    return web.Response(status=504, text="gateway timeout")
                if hostile_names and "/history/" in request.path:
                    payload = _hostile(payload.decode()).encode()
                return web.Response(
                    status=upstream.status, body=payload, content_type=upstream.content_type
                )

        app = web.Application()
        app.router.add_route("*", "/comfy/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/comfy", log

    yield start
    for runner in runners:
        await runner.cleanup()
    await session.close()


def _hostile(payload: str) -> str:
    """Every output file name made to climb out of its folder."""
    return payload.replace('"filename": "', '"filename": "../../').replace(
        '"filename":"', '"filename":"../../'
    )


def _executed_of(payload: str, node: str | None) -> bool:
    if node is None or '"executed"' not in payload:
        return False
    message = json.loads(payload)
    return bool(message.get("type") == "executed" and message["data"].get("node") == node)


async def _bridge(
    request: web.Request,
    session: Any,
    url: str,
    query: dict[str, str],
    hostile: bool = False,
    drop_executed_of: str | None = None,
) -> web.WebSocketResponse:
    import aiohttp

    downstream = web.WebSocketResponse()
    await downstream.prepare(request)
    async with session.ws_connect(url, params=query) as upstream:

        async def pump_up() -> None:
            async for msg in downstream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await upstream.send_str(msg.data)

        task = asyncio.create_task(pump_up())
        try:
            async for msg in upstream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    if _executed_of(msg.data, drop_executed_of):
                        continue  # like a server that sends no executed frame for that node
                    await downstream.send_str(_hostile(msg.data) if hostile else msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await downstream.send_bytes(msg.data)
        finally:
            task.cancel()
            await downstream.close()
    return downstream


async def test_auth_required_by_proxy(proxy: ProxyFactory) -> None:
    url, log = await proxy()
    async with (
        ComfyUIClient(ServerAddress(url, token="let-me-in"), FAST) as client,
        PromptTracker(client) as tracker,
    ):
        assert tracker.mode == "websocket"
        result = await (await tracker.submit(image_graph())).result(10)
        assert result.via == "websocket" and result.files
    assert "ok GET /comfy/ws" in log and not any(line.startswith("401") for line in log)
    async with ComfyUIClient(ServerAddress(url, token="wrong"), FAST) as client:
        with pytest.raises(Exception, match="401"):
            await client.system_stats()


async def test_hostile_output_filenames_refused(proxy: ProxyFactory, tmp_path: Path) -> None:
    url, _ = await proxy(hostile_names=True)
    async with (
        ComfyUIClient(ServerAddress(url, token="let-me-in"), FAST) as client,
        PromptTracker(client) as tracker,
    ):
        result = await (await tracker.submit(image_graph())).result(10)
        (file,) = result.files
        assert file.filename.startswith("../../")
        dest = tmp_path / "frames"
        with pytest.raises(UnsafePathError):
            await client.download(file, dest)
    assert not (tmp_path / file.filename.removeprefix("../../")).exists()


def txt2img_graph(steps: int = 4) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "tiny-random-sd15.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": steps,
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
        "9": {
            "class_type": "SaveImage",
            "inputs": {"images": ["8", 0], "filename_prefix": "txt2img"},
        },
    }


async def test_sampler_steps_and_previews() -> None:
    options = EmulatorOptions(step_seconds=0.01, preview_method="latent2rgb")
    async with (
        Emulator(options) as emu,
        ComfyUIClient(emu.url, FAST) as client,
        PromptTracker(client) as tracker,
    ):
        handle = await tracker.submit(txt2img_graph(steps=4))
        events = await collect(handle)
        result = await handle.result()
    steps = [e for e in events if isinstance(e, ev.NodeProgress)]
    assert [(s.value, s.max) for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    previews = [e for e in events if isinstance(e, ev.PreviewImage)]
    assert previews and all(p.prompt_id == handle.prompt_id and p.node_id == "3" for p in previews)
    assert all(p.format == "JPEG" and p.image.startswith(b"\xff\xd8") for p in previews)
    fractions = [e.fraction for e in events if isinstance(e, OverallProgress)]
    assert fractions == sorted(fractions) and len(fractions) >= 7  # steps move it too
    assert result.timings["3"].duration is not None and result.timings["3"].duration >= 0.03


async def test_history_unreadable_uses_ws_outputs(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        emu.faults.fail_route("GET", "/history/*", 503, times=10_000)
        result = await (await tracker.submit(image_graph())).result(10)
        emu.faults.clear()
    assert result.via == "websocket" and result.history is None
    assert [f.node_id for f in result.files] == ["99"]


async def test_transient_http_errors_while_polling(emu: Emulator) -> None:
    emu.faults.fail_route("GET", "/ws", 404, times=10_000)
    emu.faults.fail_route("GET", "/queue", 500, times=5)
    emu.faults.fail_route("GET", "/history/*", 502, times=5)
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        result = await (await tracker.submit(image_graph())).result(10)
    assert result.via == "polling" and result.files


async def test_close_settles_open_handles(slow_emu: Emulator) -> None:
    async with ComfyUIClient(slow_emu.url, FAST) as client:
        tracker = await PromptTracker(client).start()
        handle = await tracker.submit(image_graph(blur_nodes=20))
        await tracker.close()
        events = await collect(handle)
        assert isinstance(events[-1], PromptCompleted) and events[-1].status == "closed"
        assert tracker.mode == "closed"
        await client.interrupt(handle.prompt_id)


async def test_api_surface_against_emulator(emu: Emulator) -> None:
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        stats = await client.system_stats()
        assert stats["system"]["comfyui_version"]
        info = await client.object_info()
        assert info is not None and "KSampler" in info
        assert (await client.object_info("SaveImage")) is info["SaveImage"]
        assert "checkpoints" in await client.models()
        assert "tiny-random-sd15.safetensors" in await client.models("checkpoints")
        done = await (await tracker.submit(image_graph(), prompt_id="surface-1")).result(10)
        recent = await client.recent_history(max_items=5)
        assert "surface-1" in recent and recent["surface-1"].status is PromptStatus.SUCCESS
        assert (await client.history("surface-1")) is not None
        assert await client.history("no-such-id") is None
        queue = await client.queue()
        assert queue.running == () and queue.pending == ()
        await client.clear_queue()
        await client.free_memory(unload_models=True)
        await client.delete_history(["surface-1"])
        assert await client.history("surface-1") is None
    assert done.files


async def test_gateway_timeout_after_forwarding_is_not_a_lost_prompt(
    proxy: ProxyFactory, emu: Emulator
) -> None:
    url, log = await proxy(gateway_timeout_on_prompt=True)
    async with (
        ComfyUIClient(ServerAddress(url, token="let-me-in"), FAST) as client,
        PromptTracker(client) as tracker,
    ):
        handle = await tracker.submit(image_graph(), prompt_id="forwarded-1")
        result = await handle.result(10)
    assert "504 POST /comfy/prompt" in log
    assert result.prompt_id == "forwarded-1" and result.files
    assert emu.executed_prompt_ids == ["forwarded-1"]


async def test_gateway_error_before_forwarding_raises(emu: Emulator) -> None:
    emu.faults.fail_route("POST", "/prompt", 502)
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        with pytest.raises(ServerResponseError) as info:
            await tracker.submit(image_graph(), prompt_id="never-1")
        assert tracker.handle("never-1") is None
    assert info.value.status == 502


async def test_long_silent_node_is_not_idle_but_dead_server_is() -> None:
    timeouts = FAST.replace(watchdog=0.2, idle_timeout=0.6, lost_grace=5)
    async with (
        Emulator(EmulatorOptions(node_seconds=0.8)) as emu,
        ComfyUIClient(emu.url, timeouts) as client,
        PromptTracker(client) as tracker,
    ):
        # Each node is silent for longer than the idle timeout: polls see it running.
        result = await (await tracker.submit(image_graph())).result(10)
        assert result.files
        handle = await tracker.submit(image_graph(color=3, blur_nodes=5))
        await wait_for_event(handle, ev.NodeExecuting)
        await emu.stop()
        with pytest.raises(ServerTimeout, match="no sign"):
            await handle.result(10)


async def test_resume_watch_of_finished_prompt_is_quick(emu: Emulator) -> None:
    """After a restart of StoryCore: watch a prompt submitted by the previous run."""
    slow_watchdog = FAST.replace(watchdog=30)
    async with ComfyUIClient(emu.url, slow_watchdog) as client:
        earlier = await client.submit(
            image_graph(), prompt_id="from-last-run", client_id="old-client"
        )
        for _ in range(250):  # bounded: about 5 s
            if await client.history(earlier.prompt_id) is not None:
                break
            await asyncio.sleep(0.02)
        async with PromptTracker(client) as tracker:
            started = time.monotonic()
            handle = tracker.watch("from-last-run")
            tracker.mark_submitted("from-last-run")
            result = await handle.result(5)
            assert time.monotonic() - started < 2
    assert result.via == "polling" and result.files


async def test_a_whole_websocket_stream_settles_without_reading_history(emu: Emulator) -> None:
    """execution_start to execution_success on one connection: the outputs come from the
    ``executed`` frames (sent for cached output nodes too), so no GET /history/{id}."""
    emu.faults.fail_route("GET", "/history/*", 500, times=1)  # armed until someone reads it
    async with ComfyUIClient(emu.url, FAST) as client, PromptTracker(client) as tracker:
        first = await (await tracker.submit(image_graph())).result(10)
        again = await (await tracker.submit(image_graph())).result(10)  # every node cached
        with pytest.raises(ServerResponseError):
            await client.history(first.prompt_id)  # the fault is still armed: nobody asked
    assert first.via == again.via == "websocket"
    assert first.history is None and again.history is None
    assert [f.node_id for f in first.files] == [f.node_id for f in again.files] == ["99"]
    assert "99" in again.cached_nodes


async def test_a_missing_executed_frame_for_a_needed_output_reads_history(
    proxy: ProxyFactory,
) -> None:
    """A server that sends no ``executed`` frame for a node the caller needs (older ComfyUI
    did not for cached nodes): the outputs come from /history, not from a partial stream."""
    url, log = await proxy(drop_executed_of="99")
    graph = image_graph(prefix="partial")
    graph["98"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    async with (
        ComfyUIClient(ServerAddress(url, token="let-me-in"), FAST) as client,
        PromptTracker(client) as tracker,
    ):
        result = await (await tracker.submit(graph, outputs=("99",))).result(10)
    assert result.history is not None  # settled from /history
    assert sorted(f.node_id for f in result.files) == ["98", "99"]
    assert any(line.startswith("ok GET /comfy/history/") for line in log)


def test_prompt_budget_keeps_the_graph_and_a_bounded_share_of_the_rest() -> None:
    from storycore.comfyui._budget import MAX_EXTRA_NODES, MAX_OUTPUT_BYTES, PromptBudget

    budget = PromptBudget("p", lambda node: node in {"1", "9"})
    for n in range(MAX_EXTRA_NODES):
        assert budget.admit(ev.NodeExecuting("p", f"x{n}"), 50) is not None
    assert budget.admit(ev.NodeExecuting("p", "one-too-many"), 50) is None
    assert budget.admit(ev.NodeExecuting("p", "9"), 50) is not None  # the graph's always
    cached = budget.admit(ev.CachedNodes("p", ("1", "new", "x0")), 50)
    assert cached == ev.CachedNodes("p", ("1", "x0"))
    assert budget.admit(ev.NodeExecuted("p", "9", {}), MAX_OUTPUT_BYTES - 10) is not None
    assert budget.admit(ev.NodeExecuted("p", "9", {}), 11) is None  # past the output budget


def test_orphan_frames_stay_within_their_byte_budget() -> None:
    from storycore.comfyui._budget import ORPHAN_BYTES, OrphanFrames

    orphans = OrphanFrames()
    size = ORPHAN_BYTES // 16
    for n in range(100):
        orphans.add(f"p{n}", ev.ExecutionSuccess(f"p{n}"), size)
    assert len(orphans) <= 16
    assert orphans.pop("p0") == []
    assert [e for e, _ in orphans.pop("p99")] == [ev.ExecutionSuccess("p99")]
