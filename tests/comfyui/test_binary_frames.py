"""Binary WebSocket frames of every type (1-4), unknown and hostile ones, over a real socket.

Layouts from ComfyUI server.py ``send`` / ``encode_bytes`` / ``send_image`` /
``send_image_with_metadata`` / ``send_progress_text`` @ 002c3fb9 and protocol.py
``BinaryEventTypes``; frames rebuilt from the 0.3.64 recordings (their header, metadata, image
magic and length).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from storycore.comfyui import ComfyUIClient, PromptTracker
from storycore.comfyui import events as ev
from storycore.comfyui._wsfeed import WebSocketFeed
from storycore.emulator import Emulator, EmulatorOptions
from tests._recordings import load_transcript
from tests.comfyui.conftest import Serve
from tests.comfyui.test_comfyui_tracker import FAST, txt2img_graph

RECORDED = {
    "ws_sd15_preview_with_metadata_flag.jsonl": (4, "JPEG"),
    "ws_sd15_preview_without_flag.jsonl": (1, "JPEG"),
    "ws_saveimagewebsocket_no_feature_flags.jsonl": (1, "PNG"),
    "ws_saveimagewebsocket_with_preview_metadata_flag.jsonl": (4, "PNG"),
}


def _binary_entries(name: str) -> list[dict[str, Any]]:
    entries = [e for e in load_transcript(name) if e["kind"] == "ws_recv_binary"]
    assert entries, name
    return entries


def rebuild(entry: dict[str, Any]) -> bytes:
    """The recorded frame: its first 8 bytes, ComfyUI's own ``json.dumps(metadata)`` for type 4
    (whose length must be the one the header recorded), the image's magic, zeros to its length."""
    head = bytes.fromhex(entry["first8_hex"])
    body = head
    if entry["event_type"] == 4:
        meta = json.dumps(entry["metadata"]).encode("utf-8")
        assert struct.unpack(">I", head[4:8])[0] == len(meta), "metadata as ComfyUI encodes it"
        body += meta
    body += bytes.fromhex(entry["image_magic_hex"])
    return body + b"\0" * (entry["len"] - len(body))


def _jpeg(size: tuple[int, int] = (16, 12)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(out, format="JPEG")
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_frames_parse(name: str) -> None:
    event_type, fmt = RECORDED[name]
    for entry in _binary_entries(name):
        frame = rebuild(entry)
        event = ev.parse_binary_frame(frame)
        assert isinstance(event, ev.PreviewImage)
        assert event.event_type == event_type == entry["event_type"]
        assert event.format == fmt
        assert event.image.startswith(bytes.fromhex(entry["image_magic_hex"]))
        assert len(event.image) == len(frame) - 8 - (
            struct.unpack(">I", frame[4:8])[0] if event_type == 4 else 0
        )
        if event_type == 4:
            meta = entry["metadata"]
            assert event.prompt_id == meta["prompt_id"] and event.node_id == meta["node_id"]
            assert event.metadata["display_node_id"] == meta["display_node_id"]
            assert event.metadata["real_node_id"] == meta["real_node_id"]
            assert event.metadata["parent_node_id"] is None
        else:
            assert event.prompt_id is None and event.node_id is None
        # bytearray and memoryview (what a socket library may hand over) parse the same.
        assert ev.parse_binary_frame(bytearray(frame)) == event
        assert ev.parse_binary_frame(memoryview(frame)) == event


def test_type_1_declared_format_is_used_only_for_unknown_bytes() -> None:
    png_declared = struct.pack(">II", 1, 2) + b"not an image"
    event = ev.parse_binary_frame(png_declared)
    assert isinstance(event, ev.PreviewImage) and event.format == "PNG"
    lying = struct.pack(">II", 1, 2) + _jpeg()  # says PNG, is a JPEG
    event = ev.parse_binary_frame(lying)
    assert isinstance(event, ev.PreviewImage) and event.format == "JPEG"
    odd_code = struct.pack(">II", 1, 77) + b"???"
    event = ev.parse_binary_frame(odd_code)
    assert isinstance(event, ev.PreviewImage) and event.format == "unknown"


def test_type_2_is_read_like_type_1_and_never_trusted() -> None:
    """ComfyUI turns UNENCODED_PREVIEW_IMAGE (2) into a type-1 frame before sending (server.py
    ``send`` -> ``send_image``); a node calling ``send_bytes(2, ...)`` itself would put one on
    the wire: read with the type-1 layout, its format from the bytes only."""
    jpeg = _jpeg()
    event = ev.parse_binary_frame(struct.pack(">II", 2, 2) + jpeg)
    assert isinstance(event, ev.PreviewImage)
    assert event.event_type == 2 and event.format == "JPEG" and event.image == jpeg
    junk = ev.parse_binary_frame(struct.pack(">II", 2, 1) + b"\x00" * 32)
    assert isinstance(junk, ev.PreviewImage) and junk.format == "unknown"


def test_type_3_progress_text() -> None:
    text = b"Task in progress: 12s"
    event = ev.parse_binary_frame(struct.pack(">II", 3, 2) + b"17" + text)
    assert event == ev.ProgressText(node_id="17", text="Task in progress: 12s")
    bad_text = ev.parse_binary_frame(struct.pack(">II", 3, 1) + b"5" + b"\xff\xfe ok")
    assert isinstance(bad_text, ev.ProgressText) and bad_text.text.endswith(" ok")


def test_type_4_metadata_keys_of_the_current_source() -> None:
    meta = {
        "node_id": "12",
        "prompt_id": "p-1",
        "display_node_id": "10",
        "parent_node_id": "10",
        "real_node_id": "12",
        "image_type": "image/png",
    }
    raw = json.dumps(meta).encode()
    event = ev.parse_binary_frame(struct.pack(">II", 4, len(raw)) + raw + b"\x89PNG\r\n\x1a\n")
    assert isinstance(event, ev.PreviewImage)
    assert (event.prompt_id, event.node_id, event.format) == ("p-1", "12", "PNG")
    assert event.metadata["display_node_id"] == "10"


@pytest.mark.parametrize("event_type", [0, 5, 6, 99, 2**31, 2**32 - 1])
def test_unknown_types_are_ignored(event_type: int) -> None:
    assert ev.parse_binary_frame(struct.pack(">II", event_type, 0) + _jpeg()) is None


@pytest.mark.parametrize("event_type", [1, 2, 3, 4, 9])
@pytest.mark.parametrize("length", range(8))
def test_short_frames_are_ignored(event_type: int, length: int) -> None:
    assert ev.parse_binary_frame(struct.pack(">II", event_type, 0)[:length]) is None


def _meta(raw: bytes, declared: int | None = None) -> bytes:
    return struct.pack(">II", 4, len(raw) if declared is None else declared) + raw + _jpeg()


@pytest.mark.parametrize(
    "frame",
    [
        _meta(b"{}", declared=2**32 - 1),  # a length past the frame
        _meta(b'{"a": "' + b"x" * (ev.MAX_METADATA_BYTES + 1) + b'"}'),  # metadata too long
        _meta(b"[" * 5000 + b"]" * 5000),  # nested past the parser's depth
        _meta(b'["node_id", "prompt_id"]'),  # not an object
        _meta(b"\xff\xfe\x00"),  # not UTF-8
        _meta(b'{"node_id": '),  # cut short
        struct.pack(">II", 3, 2**32 - 1) + b"1",  # node-id length past the frame
        struct.pack(">II", 3, 4) + b"\xff\xff\xff\xff text",  # node id not UTF-8
        struct.pack(">II", 3, 5000) + b"9" * 5000,  # node id too long
    ],
)
def test_hostile_frames_are_ignored(frame: bytes) -> None:
    assert ev.parse_binary_frame(frame) is None


def test_hostile_ids_in_metadata_are_dropped_not_kept() -> None:
    raw = json.dumps({"prompt_id": "p" * 5000, "node_id": {"x": 1}}).encode()
    event = ev.parse_binary_frame(_meta(raw))
    assert isinstance(event, ev.PreviewImage)
    assert event.prompt_id is None and event.node_id is None


async def test_feed_reads_every_type_and_keeps_the_connection(serve: Serve) -> None:
    """An inline server sends frames of every type, unknown and short ones among them, then a
    status text: each known frame is an event, the rest is skipped, one connection in all, and
    the client's first message announces preview metadata."""
    first_message: list[Any] = []
    jpeg = _jpeg()
    raw = json.dumps({"node_id": "3", "prompt_id": "p", "image_type": "image/jpeg"}).encode()
    frames = [
        struct.pack(">II", 1, 1) + jpeg,
        struct.pack(">II", 2, 1) + jpeg,
        struct.pack(">II", 3, 1) + b"3hello",
        struct.pack(">II", 4, len(raw)) + raw + jpeg,
        struct.pack(">II", 7, 0) + b"future",
        b"\x00\x00",
        struct.pack(">II", 4, 2**32 - 1),
    ]

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        first_message.append(json.loads((await sock.receive(timeout=5)).data))
        for frame in frames:
            await sock.send_bytes(frame)
        await sock.send_json({"type": "status", "data": {"status": {"exec_info": {}}}})
        await asyncio.sleep(5)
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    url = await serve(app)
    got: list[ev.Event] = []
    status = asyncio.Event()

    def on_event(event: ev.Event, _size: int) -> None:
        got.append(event)
        if isinstance(event, ev.ServerStatus):
            status.set()

    async with ComfyUIClient(url, FAST) as client:
        feed = WebSocketFeed(client, on_event, lambda: None)
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(feed.run(first))
        try:
            async with asyncio.timeout(10):
                await status.wait()
            assert feed.connected and feed.connections == 1
        finally:
            await feed.close()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert first_message == [{"type": "feature_flags", "data": {"supports_preview_metadata": True}}]
    kinds = [(type(e).__name__, getattr(e, "event_type", None)) for e in got]
    assert kinds == [
        ("PreviewImage", 1),
        ("PreviewImage", 2),
        ("ProgressText", None),
        ("PreviewImage", 4),
        ("ServerStatus", None),
    ]


@pytest.mark.parametrize("metadata", [True, False])
async def test_tracker_hands_previews_with_their_step_to_a_listener(metadata: bool) -> None:
    """Against the emulator started with previews on: each preview of the followed prompt
    reaches the listener with the sampler step it shows, and the listener is forgotten with the
    finished prompt."""
    seen: list[tuple[ev.PreviewImage, int | None, int | None]] = []
    options = EmulatorOptions(step_seconds=0.02, preview_method="auto")
    async with Emulator(options) as emu, ComfyUIClient(emu.url, FAST) as client:
        tracker = PromptTracker(client)
        if not metadata:  # a client that announces nothing gets type-1 frames
            tracker._feed.announce = None
        async with tracker:
            handle = await tracker.submit(txt2img_graph(steps=4), prompt_id="p-previews")
            tracker.on_preview(handle.prompt_id, lambda p, s, n: seen.append((p, s, n)))
            await handle.result(20)
    assert 1 <= len(seen) <= 4
    assert all(p.format == "JPEG" and p.image.startswith(b"\xff\xd8") for p, _, _ in seen)
    assert all(n == 4 and s is not None and 1 <= s <= 4 for _, s, n in seen)
    assert [s for _, s, _ in seen] == sorted(s for _, s, _ in seen)
    if metadata:
        assert all(p.event_type == 4 and p.prompt_id == "p-previews" for p, _, _ in seen)
    else:  # routed to the prompt that runs now (the server names none)
        assert all(p.event_type == 1 and p.prompt_id is None for p, _, _ in seen)
    assert tracker._previews == {}  # dropped with the finished prompt


async def test_a_listener_that_raises_is_dropped_not_the_connection() -> None:
    calls = 0

    def bad(_p: ev.PreviewImage, _s: int | None, _n: int | None) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    options = EmulatorOptions(step_seconds=0.02, preview_method="latent2rgb")
    async with (
        Emulator(options) as emu,
        ComfyUIClient(emu.url, FAST) as client,
        PromptTracker(client) as tracker,
    ):
        handle = await tracker.submit(txt2img_graph(steps=4))
        tracker.on_preview(handle.prompt_id, bad)
        result = await handle.result(20)
        assert tracker.ws_connections == 1
    assert calls == 1 and result.via == "websocket"
