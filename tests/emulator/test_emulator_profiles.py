"""The emulator's two profiles over loopback: ``0.3.64`` answers as the recordings do,
``current`` adds what today's ComfyUI source does (storycore/emulator/_profiles.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
import uuid
from typing import Any

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions

from ._support import collect_until_done, load_reference_json, trivial_prompt

INVALID_PROMPT_ID = {
    "error": {
        "type": "invalid_prompt_id",
        "message": "prompt_id must be a valid UUID",
        "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
        "omit it to let the server generate one",
        "extra_info": {},
    },
    "node_errors": {},
}
CURRENT_FEATURES = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,
}
NEW_SYSTEM_KEYS = {"comfy_package_versions", "deploy_environment"}
NEW_NODE_KEYS = {"is_input_list", "has_intermediate_output", "search_aliases", "dev_only"}


def _recorded(route: str) -> Any:
    return load_reference_json("http_get_endpoints.json")["routes"][route]["json"]


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200
        return await r.json()


def _sd_prompt(steps: int = 2) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 128, "height": 128, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7,
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
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "fox"}},
    }


# ---- 0.3.64: the recordings ---------------------------------------------------------------


async def test_recorded_profile_answers_as_recorded(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    assert emu.options.profile == "0.3.64"  # the library default
    assert await _get(http, f"{emu.url}/features") == _recorded("/features")
    assert await _get(http, f"{emu.url}/object_info/KSampler") == _recorded("/object_info/KSampler")
    stats = await _get(http, f"{emu.url}/system_stats")
    recorded = _recorded("/system_stats")
    assert list(stats["system"]) == list(recorded["system"])
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert stats["devices"][0].keys() == recorded["devices"][0].keys()
    every = await _get(http, f"{emu.url}/object_info")
    assert not any(NEW_NODE_KEYS & set(info) for info in every.values())


async def test_recorded_profile_takes_any_prompt_id(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    recorded = load_reference_json("custom_prompt_id.json")
    chosen = recorded["post"]["body"]["prompt_id"]  # "storycore-75e177939d7a"
    async with http.post(
        f"{emu.url}/prompt", json={"prompt": trivial_prompt(), "prompt_id": chosen}
    ) as r:
        assert r.status == recorded["post"]["status"] == 200
        body = await r.json()
    assert body["prompt_id"] == chosen and body["node_errors"] == {}
    upper = str(uuid.uuid4()).upper()
    async with http.post(
        f"{emu.url}/prompt", json={"prompt": trivial_prompt(), "prompt_id": upper}
    ) as r:
        assert r.status == 200 and (await r.json())["prompt_id"] == upper


# ---- current: today's source ----------------------------------------------------------------


async def test_current_features_over_http_and_websocket(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    assert await _get(http, f"{emu_current.url}/features") == CURRENT_FEATURES
    assert await _get(http, f"{emu_current.url}/api/features") == CURRENT_FEATURES
    async with http.ws_connect(f"{emu_current.ws_url}?clientId=flags") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "status"
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        answer = await ws.receive_json(timeout=5)
    assert answer == {"type": "feature_flags", "data": CURRENT_FEATURES}


async def test_current_system_stats_has_the_newer_fields(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    stats = await _get(http, f"{emu_current.url}/system_stats")
    system = stats["system"]
    assert set(system) >= NEW_SYSTEM_KEYS
    assert not NEW_SYSTEM_KEYS & set(_recorded("/system_stats")["system"])
    assert system["comfyui_version"] == "0.38.1"
    assert system["deploy_environment"] == "local-git"
    packages = {p["name"]: p for p in system["comfy_package_versions"]}
    assert packages["comfyui-frontend-package"] == {
        "name": "comfyui-frontend-package",
        "installed": "1.53.6",
        "required": "1.53.6",
    }
    assert system["required_frontend_version"] == "1.53.6"
    assert all(set(p) == {"name", "installed", "required"} for p in packages.values())
    assert list(system)[:4] == ["os", "ram_total", "ram_free", "comfyui_version"]
    assert stats["devices"][0]["type"] == "cpu"  # the primary device first
    assert set(stats["devices"][0]) == set(_recorded("/system_stats")["devices"][0])


async def test_current_object_info_has_the_newer_fields(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    every = await _get(http, f"{emu_current.url}/object_info")
    assert all(
        info["is_input_list"] is False and info["has_intermediate_output"] is False
        for info in every.values()
    )
    ksampler = every["KSampler"]  # a classic node (nodes.py)
    assert ksampler["search_aliases"] == [] and "dev_only" not in ksampler
    recorded = _recorded("/object_info/KSampler")["KSampler"]
    assert {k: v for k, v in ksampler.items() if k not in NEW_NODE_KEYS} == recorded
    v3 = [name for name, info in every.items() if "api_node" in info]
    assert v3, "the recordings have V3 (comfy_api) nodes"
    assert all(every[n]["dev_only"] is False and "search_aliases" not in every[n] for n in v3)
    one = await _get(http, f"{emu_current.url}/api/object_info/KSampler")
    assert one == {"KSampler": ksampler}


@pytest.mark.parametrize(
    "bad",
    [
        "storycore-75e177939d7a",
        "A0B1C2D3-0000-4000-8000-00000000000F",
        "a0b1c2d3000040008000000000000000",
        "{a0b1c2d3-0000-4000-8000-000000000000}",
        "urn:uuid:a0b1c2d3-0000-4000-8000-000000000000",
        "",
        12345,
        ["a0b1c2d3-0000-4000-8000-000000000000"],
    ],
)
async def test_current_refuses_a_prompt_id_that_is_not_a_lowercase_uuid(
    emu_current: Emulator, http: aiohttp.ClientSession, bad: Any
) -> None:
    async with http.post(
        f"{emu_current.url}/prompt", json={"prompt": trivial_prompt(), "prompt_id": bad}
    ) as r:
        assert r.status == 400
        assert await r.json() == INVALID_PROMPT_ID
    assert emu_current.executor.queue_snapshot() == ([], [])
    assert emu_current.executed_prompt_ids == []


async def test_current_accepts_a_lowercase_uuid_or_mints_one(
    emu_current: Emulator, http: aiohttp.ClientSession
) -> None:
    chosen = str(uuid.uuid4())
    for sent, check in ((chosen, lambda p: p == chosen), (None, lambda p: p != chosen)):
        async with http.post(
            f"{emu_current.url}/prompt", json={"prompt": trivial_prompt(), "prompt_id": sent}
        ) as r:
            assert r.status == 200
            pid = (await r.json())["prompt_id"]
        assert check(pid) and str(uuid.UUID(pid)) == pid


async def test_current_extra_data_gets_create_time_and_loses_credentials(
    emu_options: EmulatorOptions, http: aiohttp.ClientSession
) -> None:
    extra = {"auth_token_comfy_org": "secret-1", "api_key_comfy_org": "secret-2", "note": "kept"}
    seen: dict[str, dict[str, Any]] = {}
    for profile in ("0.3.64", "current"):
        options = dataclasses.replace(emu_options, profile=profile)
        async with Emulator(options) as emu:
            pid = str(uuid.uuid4())
            async with http.post(
                f"{emu.url}/prompt",
                json={"prompt": trivial_prompt(), "prompt_id": pid, "extra_data": extra},
                headers={"Comfy-Usage-Source": "storycore-test"},
            ) as r:
                assert r.status == 200
            for _ in range(500):
                if pid in emu.executor.history:
                    break
                await asyncio.sleep(0.01)
            history = await _get(http, f"{emu.url}/history/{pid}")
            seen[profile] = history[pid]["prompt"][3]
    assert seen["0.3.64"] == extra
    current = seen["current"]
    assert isinstance(current["create_time"], int) and current["create_time"] > 1_700_000_000_000
    assert current["note"] == "kept" and current["comfy_usage_source"] == "storycore-test"
    assert "auth_token_comfy_org" not in current and "api_key_comfy_org" not in current
    assert "secret" not in json.dumps(current)


def _frames(messages: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    out = []
    for m in messages:
        if m["type"] == "<binary>":
            data: bytes = m["data"]
            out.append((struct.unpack(">I", data[:4])[0], data[4:]))
    return out


@pytest.mark.parametrize("announce", [True, False])
async def test_current_preview_frames(
    emu_options: EmulatorOptions, http: aiohttp.ClientSession, announce: bool
) -> None:
    """Type 4 (u32 type, u32 length, JSON metadata, JPEG) for a client that announced
    supports_preview_metadata, before each step's ``progress``; type 1 after it otherwise."""
    options = dataclasses.replace(emu_options, profile="current", preview_method="latent2rgb")
    async with Emulator(options) as emu, http.ws_connect(f"{emu.ws_url}?clientId=pv") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "status"
        if announce:
            await ws.send_json(
                {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            )
            assert (await ws.receive_json(timeout=5))["type"] == "feature_flags"
        pid = str(uuid.uuid4())
        async with http.post(
            f"{emu.url}/prompt", json={"prompt": _sd_prompt(), "prompt_id": pid, "client_id": "pv"}
        ) as r:
            assert r.status == 200, await r.text()
        messages = await collect_until_done(ws, pid)
    frames = _frames(messages)
    assert len(frames) == 2  # one per sampler step
    order = [m["type"] for m in messages if m["type"] in ("<binary>", "progress")]
    if announce:
        assert order == ["<binary>", "progress"] * 2
        for kind, payload in frames:
            assert kind == 4
            (length,) = struct.unpack(">I", payload[:4])
            meta = json.loads(payload[4 : 4 + length])
            assert meta == {
                "node_id": "3",
                "prompt_id": pid,
                "display_node_id": "3",
                "parent_node_id": None,
                "real_node_id": "3",
                "image_type": "image/jpeg",
            }
            assert payload[4 + length : 4 + length + 2] == b"\xff\xd8"
    else:
        assert order == ["progress", "<binary>"] * 2
        for kind, payload in frames:
            assert kind == 1
            assert struct.unpack(">I", payload[:4])[0] == 1  # JPEG
            assert payload[4:6] == b"\xff\xd8"
