"""Conformance: replay the requests of single-client recordings and compare what comes back.

For every recorded ``POST /prompt`` the emulator must answer with the same status and body
shape, and the socket must receive the same message types in the same order with the same
data shapes (ids and timestamps may differ). ``GET /history/<id>`` must have the same shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions

from ._support import collect_until_done, drain, load_transcript, shape, trivial_prompt


def _segments(
    events: list[dict[str, Any]], client: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each HTTP event with the messages ``client`` received before the next HTTP event."""
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for e in events:
        if e["kind"] == "http":
            out.append((e, []))
        elif e["kind"] == "ws_recv" and e.get("client") == client and out:
            out[-1][1].append(e)
        elif e["kind"] == "ws_recv_binary" and e.get("client") == client and out:
            out[-1][1].append({**e, "type": "<binary>", "data": e})
    return out


def _swap_ids(value: Any, mapping: dict[str, str]) -> Any:
    text = json.dumps(value)
    for old, new in mapping.items():
        text = text.replace(old, new)
    # Counters depend on what the output folder held; temp names are random.
    text = re.sub(r"_\d{5}_\.png", "_NNNNN_.png", text)
    text = re.sub(r"_temp_[a-z]{5}_", "_temp_xxxxx_", text)
    return json.loads(text)


def _check_frame(frame: bytes, recorded: dict[str, Any]) -> None:
    """Same event type, same format code or metadata keys, same image magic."""
    assert frame[:4] == bytes.fromhex(recorded["first8_hex"][:8])
    if recorded["event_type"] == 1:
        assert frame[4:8] == bytes.fromhex(recorded["first8_hex"][8:16])
        image = frame[8:]
    else:
        n = int.from_bytes(frame[4:8], "big")
        meta = json.loads(frame[8 : 8 + n])
        assert set(meta) == set(recorded["metadata"])
        assert meta["image_type"] == recorded["metadata"]["image_type"]
        image = frame[8 + n :]
    magic = bytes.fromhex(recorded["image_magic_hex"])
    assert image[: len(magic)] == magic


async def prime_cache(
    emu: Emulator, http: aiohttp.ClientSession, events: list[dict[str, Any]]
) -> None:
    """Recreate the cache a recording started with: its first prompt, with every node that was
    not reported cached changed a little."""
    post = next(e for e in events if e["kind"] == "http" and e["path"] == "/prompt")
    cached_msg = next(
        (e for e in events if e["kind"] == "ws_recv" and e.get("type") == "execution_cached"), None
    )
    if cached_msg is None or not cached_msg["data"]["nodes"]:
        return
    prompt = json.loads(json.dumps(post["request_json"]["prompt"]))
    for uid, node in prompt.items():
        if uid not in cached_msg["data"]["nodes"]:
            node["inputs"]["_storycore_prime"] = 1
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt})
    assert resp.status == 200, await resp.text()
    pid = (await resp.json())["prompt_id"]
    for _ in range(1000):
        if pid in emu.executor.history:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("priming prompt did not finish")


async def replay(
    emu: Emulator,
    http: aiohttp.ClientSession,
    events: list[dict[str, Any]],
    client: str = "A",
) -> int:
    """Replay one recording; returns how many prompts were compared."""
    opened = [e for e in events if e["kind"] == "ws_open" and e["client"] == client]
    if opened:
        recorded_sid = opened[0]["url"].split("clientId=")[1]
    else:  # the socket was opened by an earlier recording: take the id from the first prompt
        first = next(e for e in events if e["kind"] == "http" and "request_json" in e)
        recorded_sid = first["request_json"]["client_id"]
    sid = uuid.uuid4().hex
    ids = {recorded_sid: sid}
    compared = 0
    async with http.ws_connect(f"{emu.ws_url}?clientId={sid}") as ws:
        for e in events:
            if e["kind"] == "ws_send" and e["client"] == client:
                await ws.send_json(e["msg"])
                break
            if e["kind"] == "http":
                break
        first_http = next(i for i, e in enumerate(events) if e["kind"] == "http")
        greeting = [
            e for e in events[:first_http] if e["kind"] == "ws_recv" and e["client"] == client
        ]
        got = await drain(ws, 0.2)
        expected_greeting = [e["type"] for e in greeting] if opened else ["status"]
        assert [m["type"] for m in got] == expected_greeting
        for req, recv in _segments(events, client):
            path = _swap_ids(req["path"], ids)
            if req["method"] == "POST" and req["path"] == "/prompt":
                body = _swap_ids(req["request_json"], ids)
                resp = await http.post(f"{emu.url}/prompt", json=body)
                assert resp.status == req["status"], await resp.text()
                data = await resp.json()
                assert shape(data) == shape(req["response_json"])
                ids[req["response_json"]["prompt_id"]] = data["prompt_id"]
                if not recv:
                    continue
                if body.get("client_id") == sid:
                    msgs = await collect_until_done(ws, data["prompt_id"])
                else:
                    msgs = await drain(ws, 0.3)
                assert [m["type"] for m in msgs] == [r["type"] for r in recv], req["request_json"]
                for m, r in zip(msgs, recv, strict=True):
                    if m["type"] == "<binary>":
                        _check_frame(m["data"], r)
                        continue
                    assert shape(m["data"]) == shape(r["data"]), (m, r)
                    if m["type"] in ("executing", "executed", "execution_cached"):
                        expected = _swap_ids(r["data"], ids)
                        expected.pop("timestamp", None)
                        got_data = _swap_ids(m["data"], {})
                        got_data.pop("timestamp", None)
                        assert expected == got_data
                compared += 1
            elif req["method"] == "GET" and req["path"].startswith("/history/"):
                resp = await http.get(emu.url + path)
                assert resp.status == req["status"]
                data = await resp.json()
                assert shape(data) == shape(_swap_ids(req["response_json"], ids))
                await drain(ws, 0.0)
    return compared


@pytest.mark.parametrize(
    "name", ["ws_a_success.jsonl", "ws_f_custom_prompt_id.jsonl", "ws_d_execution_error.jsonl"]
)
async def test_replay_fresh_server(emu: Emulator, http: aiohttp.ClientSession, name: str) -> None:
    events = load_transcript(name)
    assert await replay(emu, http, events) >= 1


async def test_replay_cached_resubmit(emu: Emulator, http: aiohttp.ClientSession) -> None:
    # The recording ran right after ws_a_success: the same graph is already cached.
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": trivial_prompt(size=256)})
    pid = (await resp.json())["prompt_id"]
    for _ in range(500):
        if pid in emu.executor.history:
            break
        await asyncio.sleep(0.01)
    events = load_transcript("ws_b_cached.jsonl")
    assert await replay(emu, http, events) == 2


SD15_MODELS = {
    "checkpoints": ["tiny-random-sd15.safetensors"],
    "controlnet": ["tiny-random-controlnet-sd15.safetensors"],
    "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
    "ipadapter": ["ip-adapter_sd15.safetensors"],
}

NO_IPADAPTER_MODELS = {**SD15_MODELS, "clip_vision": [], "ipadapter": []}


@pytest.mark.parametrize(
    ("name", "preview", "packs"),
    [
        ("ws_sd15_txt2img.jsonl", "none", ()),
        ("ws_sd15_txt2img_512.jsonl", "none", ()),
        ("ws_sd15_txt2img_steps3_default_no_preview.jsonl", "none", ()),
        ("ws_sd15_controlnet.jsonl", "none", ()),
        ("ws_sd15_preview_with_metadata_flag.jsonl", "latent2rgb", ()),
        ("ws_sd15_preview_without_flag.jsonl", "latent2rgb", ()),
        ("ws_previewimage.jsonl", "none", ()),
        ("ws_saveimagewebsocket_no_feature_flags.jsonl", "none", ()),
        ("ws_saveimagewebsocket_with_preview_metadata_flag.jsonl", "none", ()),
        ("ws_ipadapter_run.jsonl", "none", ("ipadapter_plus",)),
        ("ws_preprocessor_canny_controlnet.jsonl", "none", ("controlnet_aux",)),
        ("ws_ipadapter_unified_missing_models.jsonl", "none", ("ipadapter_plus",)),
        ("ws_long_run_full.jsonl", "none", ()),
    ],
)
async def test_replay_recording(
    tmp_path: Path,
    http: aiohttp.ClientSession,
    name: str,
    preview: str,
    packs: tuple[str, ...],
) -> None:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        models=NO_IPADAPTER_MODELS if "missing_models" in name else SD15_MODELS,
        node_packs=packs,
        preview_method=preview,
    )
    (tmp_path / "i").mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "i" / "example.png")
    events = load_transcript(name)
    async with Emulator(options) as emu:
        await prime_cache(emu, http, events)
        assert await replay(emu, http, events) >= 1
