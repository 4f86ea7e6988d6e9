"""WebSocket delivery rules, checked against ``two_clients.json`` and ``ws_connect_variants``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from storycore.emulator import Emulator

from ._support import collect_until_done, drain, load_reference_json, trivial_prompt


async def _wait_history(emu: Emulator, prompt_id: str) -> None:
    for _ in range(500):
        if prompt_id in emu.executor.history:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{prompt_id} never reached the history")


async def _post(http: aiohttp.ClientSession, emu: Emulator, **body: object) -> str:
    resp = await http.post(f"{emu.url}/prompt", json=body)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["prompt_id"])


async def test_two_clients_match_recording(emu: Emulator, http: aiohttp.ClientSession) -> None:
    expected = load_reference_json("two_clients.json")
    async with (
        http.ws_connect(f"{emu.ws_url}?clientId=client-a") as a,
        http.ws_connect(f"{emu.ws_url}?clientId=client-b") as b,
    ):
        await a.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        await drain(a, 0.1)
        await drain(b, 0.1)
        cases = [
            ("1_client_id_A", {"client_id": "client-a"}),
            ("2_no_client_id", {}),
            ("3_ghost_client_id", {"client_id": "not-connected"}),
        ]
        for n, (case, extra) in enumerate(cases):
            pid = await _post(http, emu, prompt=trivial_prompt(color=n), **extra)
            await _wait_history(emu, pid)
            got_a = [m["type"] for m in await drain(a, 0.15)]
            got_b = [m["type"] for m in await drain(b, 0.15)]
            assert got_a == expected[case]["A_saw"], case
            assert got_b == expected[case]["B_saw"], case


async def test_interrupted_prompt_messages_go_to_owner(
    emu_options: object, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    from storycore.emulator import EmulatorOptions

    expected = load_reference_json("two_clients.json")["4_B_prompt_interrupted"]
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        node_seconds=0.2,
    )
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 1},
        },
        "10": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0},
        },
        "11": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["10", 0], "blur_radius": 3, "sigma": 1.0},
        },
        "99": {
            "class_type": "SaveImage",
            "inputs": {"images": ["11", 0], "filename_prefix": "long"},
        },
    }
    async with (
        Emulator(options) as emu,
        http.ws_connect(f"{emu.ws_url}?clientId=a") as a,
        http.ws_connect(f"{emu.ws_url}?clientId=b") as b,
    ):
        await drain(a, 0.05)
        await drain(b, 0.05)
        pid = await _post(http, emu, prompt=prompt, client_id="b")
        # Interrupt while node 10 runs, like the recording.
        for _ in range(200):
            if emu.hub.last_node_id == "10":
                break
            await asyncio.sleep(0.01)
        resp = await http.post(f"{emu.url}/interrupt")
        assert resp.status == 200
        msgs_b = await collect_until_done(b, pid)
        got_a = [m["type"] for m in await drain(a, 0.1)]
        assert [m["type"] for m in msgs_b] == expected["B_saw"]
        assert got_a == expected["A_saw"]
        interrupted = next(m for m in msgs_b if m["type"] == "execution_interrupted")["data"]
        assert interrupted["node_id"] == "11"
        assert interrupted["executed"] == ["1", "10"]
        entry = emu.executor.history[pid]
        assert entry["status"]["status_str"] == "error"
        assert entry["status"]["completed"] is False
        assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"


async def test_same_client_id_takes_over(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with (
        http.ws_connect(f"{emu.ws_url}?clientId=same") as c1,
        http.ws_connect(f"{emu.ws_url}?clientId=same") as c2,
    ):
        assert (await c1.receive_json(timeout=5))["data"]["sid"] == "same"
        assert (await c2.receive_json(timeout=5))["data"]["sid"] == "same"
        pid = await _post(http, emu, prompt=trivial_prompt(), client_id="same")
        msgs = await collect_until_done(c2, pid)
        assert len(msgs) == 14  # the recording: new socket got 14, old one none
        assert await drain(c1, 0.1) == []


async def test_old_socket_closing_deregisters_the_new_one(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    c1 = await http.ws_connect(f"{emu.ws_url}?clientId=race")
    async with http.ws_connect(f"{emu.ws_url}?clientId=race") as c2:
        await drain(c2, 0.05)
        await c1.close()
        await asyncio.sleep(0.1)
        pid = await _post(http, emu, prompt=trivial_prompt(), client_id="race")
        await _wait_history(emu, pid)
        assert await drain(c2, 0.2) == []
        assert emu.executor.history[pid]["status"]["status_str"] == "success"


async def test_connect_variants(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.url}/ws") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "status"
        assert len(first["data"]["sid"]) == 32
        await ws.send_str("not json")
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": False}})
        reply = await ws.receive_json(timeout=5)
        assert reply == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
        }
        # Only the first JSON message is a handshake.
        await ws.send_json({"type": "feature_flags", "data": {}})
        assert await drain(ws, 0.1) == []
    async with http.ws_connect(f"{emu.url}/api/ws?clientId=viaapi") as ws:
        first = await ws.receive_json(timeout=5)
        assert first == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "viaapi"},
        }


async def test_no_replay_after_reconnect(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=r") as ws:
        await drain(ws, 0.05)
    pid = await _post(http, emu, prompt=trivial_prompt(), client_id="r")
    await _wait_history(emu, pid)
    async with http.ws_connect(f"{emu.ws_url}?clientId=r") as ws:
        msgs = await drain(ws, 0.2)
        assert [m["type"] for m in msgs] == ["status"]


async def test_status_broadcast_counts_queue(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=q") as ws:
        await drain(ws, 0.05)
        pid = await _post(http, emu, prompt=trivial_prompt(), client_id="q")
        msgs = await collect_until_done(ws, pid)
        statuses = [
            m["data"]["status"]["exec_info"]["queue_remaining"]
            for m in msgs
            if m["type"] == "status"
        ]
        assert statuses == [1, 1, 0]
        assert json.dumps(msgs[-1]["data"]) == json.dumps({"node": None, "prompt_id": pid})


async def test_reconnect_during_execution_names_the_running_node(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    from storycore.emulator import EmulatorOptions

    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        node_seconds=0.3,
    )
    async with Emulator(options) as emu:
        ws = await http.ws_connect(f"{emu.ws_url}?clientId=back")
        await drain(ws, 0.05)
        pid = await _post(http, emu, prompt=trivial_prompt(), client_id="back")
        for _ in range(200):
            if emu.hub.last_node_id == "1":
                break
            await asyncio.sleep(0.01)
        await ws.close()
        async with http.ws_connect(f"{emu.ws_url}?clientId=back") as again:
            first = await again.receive_json(timeout=5)
            second = await again.receive_json(timeout=5)
            assert first["type"] == "status"
            assert second == {"type": "executing", "data": {"node": "1"}}
            rest = await collect_until_done(again, pid)
            assert [m["type"] for m in rest][-3:] == ["execution_success", "status", "executing"]
