"""Malformed and hostile server answers, generated with hypothesis, against the client/tracker.

HTTP: an inline aiohttp server answers ``/history/<id>``, ``/queue``, ``/prompt`` and ``/view``
with generated bodies (wrong types, huge numbers, NaN, non-JSON bytes, path traversal and other
poison in output file names). The client must answer with a value or a
:class:`~storycore.errors.StoryCoreError`, never another exception, and never write outside
the download folder. WebSocket: a proxy in front of a real emulator injects generated frames
(non-JSON text, junk binary, events of wrong types, events about other prompts) before every
real one; the tracker must still report the prompt's true result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storycore.comfyui import ClientTimeouts, ComfyUIClient, HistoryEntry, PromptTracker
from storycore.emulator import Emulator, EmulatorOptions
from storycore.errors import StoryCoreError
from tests.reliability._proxy import Proxy, proxy_for
from tests.reliability.conftest import Account

Report = Callable[[Account], None]

FAST = ClientTimeouts(
    connect=2,
    read=2,
    prompt_deadline=20,
    idle_timeout=10,
    watchdog=0.5,
    lost_grace=0.5,
    poll_interval=0.05,
    reconnect_initial=0.01,
    reconnect_max=0.1,
)
HOSTILE_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is never a fluke
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------ strategies
EVIL_NAMES = [
    "../../../evil.png",
    "..",
    ".",
    "/etc/passwd",
    "/tmp/evil.png",
    "a/../../evil.png",
    "..\\..\\evil.png",
    "C:\\evil.png",
    "evil\x00.png",
    "x" * 5000,
    "",
    "~/evil.png",
    "sub/\n/evil.png",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([2**63, 2**64 + 1, 10**300, -(10**300)]),  # huge values (see below too)
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(EVIL_NAMES),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
names = st.one_of(st.sampled_from(EVIL_NAMES), st.text(max_size=40), json_values)
image_refs = st.fixed_dictionaries(
    {"filename": names, "subfolder": names, "type": st.one_of(st.just("output"), names)}
)


@st.composite
def history_bodies(draw: st.DrawFn, prompt_id: str) -> Any:
    """A /history/<id> body: well-shaped with poisoned fields, wrong shapes, or junk."""
    kind = draw(st.sampled_from(["shaped", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return draw(st.one_of(json_values, st.fixed_dictionaries({prompt_id: json_values})))
    outputs = draw(
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.sampled_from(["9", "../9"])),
            st.one_of(
                st.fixed_dictionaries({"images": st.lists(image_refs, max_size=3)}), json_values
            ),
            max_size=3,
        )
    )
    status = draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "status_str": st.one_of(st.sampled_from(["success", "error"]), json_values),
                    "completed": st.one_of(st.booleans(), json_values),
                    "messages": st.one_of(st.lists(json_values, max_size=3), json_values),
                }
            ),
        )
    )
    return {prompt_id: {"prompt": draw(json_values), "outputs": outputs, "status": status}}


def _encode(body: Any) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    return json.dumps(body, allow_nan=True).encode(), "application/json"


class HostileServer:
    """Answers every route with whatever the current example says."""

    def __init__(self) -> None:
        self.body: Any = {}
        self.status = 200
        self.view = b"\x89PNG fake image bytes"
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        async def answer(request: web.Request) -> web.StreamResponse:
            if request.path == "/view":
                return web.Response(body=self.view, content_type="image/png")
            data, ctype = _encode(self.body)
            return web.Response(body=data, status=self.status, content_type=ctype)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _files_outside(sandbox: Path, dest: Path) -> list[Path]:
    return [p for p in sandbox.rglob("*") if p.is_file() and dest not in p.parents]


def _run_hostile(check: Callable[[HostileServer, asyncio.Runner], None]) -> int:
    server = HostileServer()
    with asyncio.Runner() as runner:
        runner.run(server.start())
        try:
            check(server, runner)
        finally:
            runner.run(server.stop())
    return 0


def test_hostile_history_and_output_names_never_escape(tmp_path: Path, report: Report) -> None:
    prompt_id = str(uuid.uuid4())
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "downloads"
    dest.mkdir(parents=True)
    seen = {"examples": 0, "parsed": 0, "refused": 0, "downloads": 0, "refused_downloads": 0}

    def check(server: HostileServer, runner: asyncio.Runner) -> None:
        @HOSTILE_SETTINGS
        @given(body=history_bodies(prompt_id))
        def one(body: Any) -> None:
            server.body = body
            seen["examples"] += 1

            async def go() -> None:
                async with ComfyUIClient(server.url, FAST) as client:
                    try:
                        entry = await client.history(prompt_id)
                    except StoryCoreError:
                        seen["refused"] += 1
                        return
                    assert entry is None or isinstance(entry, HistoryEntry)
                    seen["parsed"] += 1
                    for output in entry.outputs.values() if entry else ():
                        for ref in output.files:
                            try:
                                got = await client.download(ref, dest)
                            except StoryCoreError:
                                seen["refused_downloads"] += 1
                                continue
                            seen["downloads"] += 1
                            assert dest.resolve() in got.path.resolve().parents

            runner.run(go())
            assert _files_outside(sandbox, dest) == []

        one()

    _run_hostile(check)
    report(
        Account(
            scenario="hostile /history + output names (hypothesis)",
            faults=seen["examples"],
            panels=0,
            finished=seen["parsed"],
            lost=0,
            twice=0,
            open_prompts=0,
            server_renders=0,
            detail=seen,
        )
    )
    assert seen["examples"] >= 20 and seen["refused"] > 0 and seen["parsed"] > 0


def test_hostile_queue_and_prompt_answers_raise_only_storycore_errors(report: Report) -> None:
    seen = {"examples": 0, "queue_ok": 0, "submit_ok": 0, "errors": 0}
    graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}

    def check(server: HostileServer, runner: asyncio.Runner) -> None:
        @HOSTILE_SETTINGS
        @given(
            body=st.one_of(
                json_values,
                st.binary(max_size=100),
                st.fixed_dictionaries(
                    {"prompt_id": json_values, "number": json_values, "node_errors": json_values}
                ),
            ),
            status=st.sampled_from([200, 200, 400, 404, 500, 503]),
        )
        @example(body={"prompt_id": "p-1", "number": 10**300, "node_errors": {}}, status=200)
        @example(body={"error": 10**400, "node_errors": {"1": 5}}, status=400)
        @example(body=[{"x": 1}, 10**400], status=200)
        def one(body: Any, status: int) -> None:
            server.body, server.status = body, status
            seen["examples"] += 1

            async def go() -> None:
                async with ComfyUIClient(server.url, FAST) as client:
                    try:
                        await client.queue()
                        seen["queue_ok"] += 1
                    except StoryCoreError:
                        seen["errors"] += 1
                    try:
                        result = await client.submit(graph, prompt_id="p-1")
                        assert isinstance(result.prompt_id, str)
                        assert isinstance(result.number, float)
                        seen["submit_ok"] += 1
                    except StoryCoreError:
                        seen["errors"] += 1

            runner.run(go())

        one()

    _run_hostile(check)
    report(
        Account(
            scenario="hostile /queue + /prompt answers (hypothesis)",
            faults=seen["examples"],
            panels=0,
            finished=seen["queue_ok"] + seen["submit_ok"],
            lost=0,
            twice=0,
            open_prompts=0,
            server_renders=0,
            detail=seen,
        )
    )
    assert seen["examples"] >= 20 and seen["errors"] > 0


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("submit", {"prompt_id": "p-1", "number": 10**400, "node_errors": {}}),
        ("queue", {"queue_running": [[10**400, "p-1", {}, {}, []]], "queue_pending": []}),
        ("history", {"p-1": {"prompt": [10**400, "p-1", {}, {}, []], "outputs": {}}}),
    ],
)
async def test_numbers_too_large_for_a_float_raise_storycore_errors(
    call: str, body: dict[str, Any]
) -> None:
    server = HostileServer()
    server.body = body
    await server.start()
    try:
        async with ComfyUIClient(server.url, FAST) as client:
            with contextlib.suppress(StoryCoreError):
                if call == "submit":
                    await client.submit({"1": {"class_type": "X", "inputs": {}}}, prompt_id="p-1")
                elif call == "queue":
                    await client.queue()
                else:
                    await client.history("p-1")
    finally:
        await server.stop()


# ------------------------------------------------------------------ WebSocket frames
EVENT_TYPES = [
    "status",
    "executing",
    "executed",
    "progress",
    "progress_state",
    "execution_start",
    "execution_cached",
    "execution_success",
    "execution_error",
    "execution_interrupted",
]
TERMINAL = {"execution_success", "execution_error", "execution_interrupted"}


@st.composite
def ws_frames(draw: st.DrawFn, prompt_id: str) -> list[str | bytes]:
    frames: list[str | bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "binary", "json", "event", "ours"]))
        if kind == "text":
            frames.append(draw(st.text(max_size=50)))
        elif kind == "binary":
            frames.append(draw(st.binary(max_size=64)))
        elif kind == "json":
            frames.append(json.dumps(draw(json_values), allow_nan=True))
        elif kind == "event":  # well-formed or not, about some other prompt
            data = draw(st.one_of(json_values, st.fixed_dictionaries({"prompt_id": st.uuids()})))
            if isinstance(data, dict) and "prompt_id" in data:
                data["prompt_id"] = str(data["prompt_id"])
            frames.append(json.dumps({"type": draw(st.sampled_from(EVENT_TYPES)), "data": data}))
        else:  # about our prompt, with wrong types, never a well-formed end
            etype = draw(st.sampled_from([t for t in EVENT_TYPES if t not in TERMINAL]))
            data = {
                "prompt_id": prompt_id,
                "node": draw(st.one_of(st.integers(), st.lists(st.integers()), st.just({}))),
                "value": draw(json_values),
                "max": draw(json_values),
                "nodes": draw(json_values),
                "output": draw(json_values),
            }
            frames.append(json.dumps({"type": etype, "data": data}, allow_nan=True))
    return frames


def image_graph(prefix: str) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0},
        },
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


async def test_hostile_websocket_frames_do_not_derail_the_tracker(report: Report) -> None:
    seen = {"examples": 0, "frames": 0}
    queue: list[list[str | bytes]] = []

    def inject() -> list[str | bytes]:
        return queue.pop(0) if queue else []

    async with (
        Emulator(EmulatorOptions(step_seconds=0.0)) as emu,
        proxy_for(Proxy(emu.url, inject=inject)) as proxy,
    ):
        loop_examples: list[tuple[str, list[list[str | bytes]]]] = []

        @HOSTILE_SETTINGS
        @given(data=st.data())
        def collect(data: st.DataObject) -> None:
            prompt_id = str(uuid.uuid4())
            batches = data.draw(st.lists(ws_frames(prompt_id), min_size=1, max_size=8))
            loop_examples.append((prompt_id, batches))

        collect()  # draw the examples first; they run below on this test's event loop
        async with ComfyUIClient(proxy.url, FAST) as client:
            tracker = PromptTracker(client)
            await tracker.start()
            try:
                for n, (prompt_id, batches) in enumerate(loop_examples[:25]):
                    queue[:] = batches
                    seen["examples"] += 1
                    seen["frames"] += sum(len(b) for b in batches)
                    handle = await tracker.submit(image_graph(f"hostile{n}"), prompt_id=prompt_id)
                    async with asyncio.timeout(15):
                        result = await handle.result()
                    assert result.prompt_id == prompt_id
                    names = [f.filename for f in result.files]
                    assert names and all(name.startswith(f"hostile{n}_") for name in names)
            finally:
                await tracker.close()
    report(
        Account(
            scenario="hostile WebSocket frames (hypothesis)",
            faults=proxy.injected,
            panels=seen["examples"],
            finished=seen["examples"],
            lost=0,
            twice=0,
            open_prompts=0,
            server_renders=seen["examples"],
            detail=seen,
        )
    )
    assert seen["examples"] >= 10 and proxy.injected > 0
