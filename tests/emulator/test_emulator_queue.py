"""Queue, interrupt, history and cache operations (``queue_ops.json``, ``interrupt.json``...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions

from ._support import collect_until_done, drain, load_reference_json, trivial_prompt


def _long_prompt(n: int = 3, color: int = 1) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": color},
        },
    }
    prev = "1"
    for i in range(10, 10 + n):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [prev, 0]}}
        prev = str(i)
    prompt["99"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [prev, 0], "filename_prefix": "long"},
    }
    return prompt


@pytest.fixture
async def slow_emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        node_seconds=0.15,
    )
    async with Emulator(options) as emulator:
        yield emulator


async def _post(http: aiohttp.ClientSession, emu: Emulator, **body: Any) -> dict[str, Any]:
    resp = await http.post(f"{emu.url}/prompt", json=body)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _wait(cond: Any, limit: float = 10.0) -> None:
    for _ in range(int(limit / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_queue_operations_match_recording(
    slow_emu: Emulator, http: aiohttp.ClientSession
) -> None:
    rec = load_reference_json("queue_ops.json")
    emu = slow_emu
    running = await _post(http, emu, prompt=_long_prompt(6), client_id="c")
    await _wait(lambda: emu.executor.running)
    posted = [
        await _post(http, emu, prompt=trivial_prompt(color=i), client_id="c") for i in range(3)
    ]
    posted.append(await _post(http, emu, prompt=trivial_prompt(color=7), client_id="c", front=True))
    posted.append(
        await _post(http, emu, prompt=trivial_prompt(color=8), client_id="c", number=-100.0)
    )
    numbers = [p["number"] for p in posted]
    assert numbers == [1, 2, 3, -4, -100.0]
    assert [type(n) for n in numbers] == [type(p["number"]) for p in rec["post_responses"]]
    queue = await (await http.get(f"{emu.url}/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [running["prompt_id"]]
    # Heap order, as the recording: same positions for the same push sequence.
    ids = [p["prompt_id"] for p in posted]
    rec_ids = [p["prompt_id"] for p in rec["post_responses"]]
    order = [rec_ids.index(item[1]) for item in rec["queue_with_items"]["queue_pending"]]
    assert [item[1] for item in queue["queue_pending"]] == [ids[i] for i in order]
    assert len(queue["queue_pending"][0]) == 5
    assert (await (await http.get(f"{emu.url}/prompt")).json()) == rec["get_prompt_with_items"]
    # delete one pending, an unknown id and the running one: 200 each, only the pending goes.
    for target in (ids[0], "no-such-id", running["prompt_id"]):
        resp = await http.post(f"{emu.url}/queue", json={"delete": [target]})
        assert resp.status == 200
        assert await resp.read() == b""
    queue = await (await http.get(f"{emu.url}/queue")).json()
    assert ids[0] not in [item[1] for item in queue["queue_pending"]]
    assert [item[1] for item in queue["queue_running"]] == [running["prompt_id"]]
    resp = await http.post(f"{emu.url}/api/queue", json={"clear": True})
    assert resp.status == 200
    queue = await (await http.get(f"{emu.url}/queue")).json()
    assert queue["queue_pending"] == []
    assert [item[1] for item in queue["queue_running"]] == [running["prompt_id"]]
    await _wait(lambda: running["prompt_id"] in emu.executor.history)
    for pid in ids:
        assert (await (await http.get(f"{emu.url}/history/{pid}")).json()) == {}
    assert emu.executed_prompt_ids == [running["prompt_id"]]


async def test_front_order(slow_emu: Emulator, http: aiohttp.ClientSession) -> None:
    expected = load_reference_json("queue_ops.json")["execution_order_with_front"]
    emu = slow_emu
    names: dict[str, str] = {}
    names[(await _post(http, emu, prompt=_long_prompt(2)))["prompt_id"]] = "L"
    await _wait(lambda: emu.executor.running)
    names[(await _post(http, emu, prompt=trivial_prompt(color=1)))["prompt_id"]] = "A"
    names[(await _post(http, emu, prompt=trivial_prompt(color=2)))["prompt_id"]] = "B"
    names[(await _post(http, emu, prompt=trivial_prompt(color=3), front=True))["prompt_id"]] = (
        "C_front"
    )
    await _wait(lambda: len(emu.executed_prompt_ids) == 4)
    assert [names[p] for p in emu.executed_prompt_ids] == expected


async def test_targeted_interrupt(slow_emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu = slow_emu
    async with http.ws_connect(f"{emu.ws_url}?clientId=t") as ws:
        await drain(ws, 0.05)
        pid = (await _post(http, emu, prompt=_long_prompt(4), client_id="t"))["prompt_id"]
        await _wait(lambda: emu.hub.last_node_id == "10")
        resp = await http.post(f"{emu.url}/interrupt", json={"prompt_id": "not-running-id"})
        assert resp.status == 200
        await _wait(lambda: emu.hub.last_node_id == "11")
        resp = await http.post(f"{emu.url}/api/interrupt", json={"prompt_id": pid})
        assert resp.status == 200
        msgs = await collect_until_done(ws, pid)
        types = [m["type"] for m in msgs]
        assert "execution_success" not in types
        stop = next(m["data"] for m in msgs if m["type"] == "execution_interrupted")
        assert stop["node_id"] == "12"
        assert set(stop) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
        assert types[-3:] == ["execution_interrupted", "status", "executing"]


async def test_interrupt_during_sampler_steps(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        step_seconds=0.05,
    )
    prompt = _txt2img(steps=40)
    async with Emulator(options) as emu, http.ws_connect(f"{emu.ws_url}?clientId=k") as ws:
        await drain(ws, 0.05)
        pid = (await _post(http, emu, prompt=prompt, client_id="k"))["prompt_id"]
        msgs: list[dict[str, Any]] = []
        while True:
            m = await ws.receive_json(timeout=5)
            msgs.append(m)
            if m["type"] == "progress" and m["data"]["value"] == 3:
                await http.post(f"{emu.url}/interrupt")
                break
        msgs += await collect_until_done(ws, pid)
        progress = [m["data"]["value"] for m in msgs if m["type"] == "progress"]
        assert progress[:3] == [1, 2, 3]
        assert len(progress) < 10
        stop = next(m["data"] for m in msgs if m["type"] == "execution_interrupted")
        assert stop["node_type"] == "KSampler"


def _txt2img(steps: int = 2, seed: int = 1, text: str = "a storyboard frame") -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 128, "height": 96, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
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
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "sd", "images": ["8", 0]}},
    }


async def test_history_operations(emu: Emulator, http: aiohttp.ClientSession) -> None:
    rec = load_reference_json("history_examples.json")
    pids = []
    for i in range(3):
        body = await _post(http, emu, prompt=trivial_prompt(color=i))
        pids.append(body["prompt_id"])
    await _wait(lambda: all(p in emu.executor.history for p in pids))
    last_two = await (await http.get(f"{emu.url}/history?max_items=2")).json()
    assert list(last_two) == pids[1:]
    first_two = await (await http.get(f"{emu.url}/api/history?max_items=2&offset=0")).json()
    assert list(first_two) == pids[:2]
    assert (
        await (await http.get(f"{emu.url}/history?max_items=0")).json()
        == rec["/history?max_items=0"]["body"]
    )
    everything = await (await http.get(f"{emu.url}/history")).json()
    assert list(everything) == pids
    # No client id: extra_data is empty, like the recording.
    assert everything[pids[0]]["prompt"][3] == {}
    resp = await http.post(f"{emu.url}/history", json={"delete": [pids[0]]})
    assert resp.status == 200
    assert await (await http.get(f"{emu.url}/history/{pids[0]}")).json() == {}
    await http.post(f"{emu.url}/history", json={"clear": True})
    assert await (await http.get(f"{emu.url}/history")).json() == {}


async def test_client_prompt_id_reuse_and_extra_data(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    rec = load_reference_json("custom_prompt_id.json")
    extra = {
        "extra_pnginfo": {
            "workflow": {"storycore": True, "nodes": []},
            "storycore_job": {"shot": 7},
        },
        "storycore_meta": {"project": "demo"},
    }
    for n in range(2):
        body = await _post(
            http,
            emu,
            prompt=trivial_prompt("storycore_custom", color=n),
            prompt_id="storycore-fixed",
            extra_data=extra,
            client_id="cid",
        )
        assert body["prompt_id"] == "storycore-fixed"
        number = body["number"]
        await _wait(
            lambda number=number: (
                emu.executor.history.get("storycore-fixed", {}).get("prompt", [None])[0] == number
            )
        )
    entry = (await (await http.get(f"{emu.url}/history/storycore-fixed")).json())["storycore-fixed"]
    rec_entry = rec["history"]["storycore-75e177939d7a"]
    assert list(entry["prompt"][3]) == list(rec_entry["prompt"][3])
    assert entry["outputs"] == rec["history_after_reuse_outputs"]
    numeric = await _post(http, emu, prompt=trivial_prompt(), prompt_id=12345)
    assert numeric["prompt_id"] == "12345"


async def test_free_clears_the_cache(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=f") as ws:
        await drain(ws, 0.05)
        cached = []
        for _ in range(2):
            pid = (await _post(http, emu, prompt=trivial_prompt(), client_id="f"))["prompt_id"]
            msgs = await collect_until_done(ws, pid)
            cached.append(next(m["data"]["nodes"] for m in msgs if m["type"] == "execution_cached"))
        resp = await http.post(f"{emu.url}/free", json={"unload_models": True, "free_memory": True})
        assert resp.status == 200
        pid = (await _post(http, emu, prompt=trivial_prompt(), client_id="f"))["prompt_id"]
        msgs = await collect_until_done(ws, pid)
        cached.append(next(m["data"]["nodes"] for m in msgs if m["type"] == "execution_cached"))
        assert cached == [[], ["1", "2"], []]
        outputs = [p.name for p in emu.output_dir.iterdir()]
        assert sorted(outputs) == ["storycore_test_00001_.png", "storycore_test_00002_.png"]


async def test_cache_is_structural_and_classic(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Node ids do not matter; only the last prompt's nodes stay cached."""
    async with http.ws_connect(f"{emu.ws_url}?clientId=s") as ws:
        await drain(ws, 0.05)

        async def cached_of(prompt: dict[str, Any]) -> list[str]:
            pid = (await _post(http, emu, prompt=prompt, client_id="s"))["prompt_id"]
            msgs = await collect_until_done(ws, pid)
            return list(next(m["data"]["nodes"] for m in msgs if m["type"] == "execution_cached"))

        a = trivial_prompt(color=1)
        renamed = {"7": a["1"], "8": {**a["2"], "inputs": {**a["2"]["inputs"], "images": ["7", 0]}}}
        assert await cached_of(a) == []
        assert await cached_of(renamed) == ["7", "8"]
        assert await cached_of(trivial_prompt(color=2)) == []
        assert await cached_of(a) == []
