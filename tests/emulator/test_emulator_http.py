"""Conformance of the GET routes, the ``/api`` prefix and the Origin check with the recordings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions

from ._support import load_reference_json, shape

# Routes the emulator serves (the recording also has /internal, /userdata, /experiment, ...).
SERVED = [
    "/system_stats",
    "/queue",
    "/prompt",
    "/embeddings",
    "/extensions",
    "/features",
    "/models",
    "/models/checkpoints",
    "/models/controlnet",
    "/models/clip_vision",
    "/models/no_such_folder",
    "/object_info/KSampler",
    "/object_info/NoSuchNode",
    "/history?max_items=1",
    "/history/no-such-id",
    "/settings",
    "/users",
    "/i18n",
    "/workflow_templates",
]
# Routes whose body must be equal, not only of the same shape.
EXACT = {
    "/queue",
    "/prompt",
    "/embeddings",
    "/extensions",
    "/features",
    "/models",
    "/models/checkpoints",
    "/models/controlnet",
    "/models/clip_vision",
    "/object_info/KSampler",
    "/object_info/NoSuchNode",
    "/history?max_items=1",
    "/history/no-such-id",
    "/users",
}


@pytest.fixture
async def rec_emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        models={
            "checkpoints": ["tiny-random-sd15.safetensors"],
            "controlnet": ["tiny-random-controlnet-sd15.safetensors"],
            "clip_vision": [],
        },
    )
    async with Emulator(options) as emulator:
        yield emulator


@pytest.mark.parametrize("route", SERVED)
@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_get_route_matches_recording(
    rec_emu: Emulator, http: aiohttp.ClientSession, route: str, prefix: str
) -> None:
    recorded = load_reference_json("http_get_endpoints.json")["routes"][prefix + route]
    resp = await http.get(rec_emu.url + prefix + route)
    assert resp.status == recorded["status"]
    if recorded["content_type"] is None:
        assert "Content-Type" not in resp.headers or resp.content_length == 0
        assert await resp.read() == b""
        return
    assert resp.headers["Content-Type"] == recorded["content_type"]
    body = await resp.json()
    if route in EXACT:
        assert body == recorded["json"]
    else:
        assert shape(body) == shape(recorded["json"])


async def test_object_info_is_the_recorded_list(
    rec_emu: Emulator, http: aiohttp.ClientSession
) -> None:
    recorded = load_reference_json("object_info.json")
    resp = await http.get(f"{rec_emu.url}/object_info")
    body = await resp.json()
    assert list(body) == list(recorded)
    # Model combos follow the configured lists; LoadImage follows the (empty) input folder.
    assert body["CheckpointLoaderSimple"] == recorded["CheckpointLoaderSimple"]
    assert body["ControlNetLoader"] == recorded["ControlNetLoader"]
    assert body["LoadImage"]["input"]["required"]["image"][0] == []
    for name in ("KSampler", "SaveImage", "EmptyImage", "ImageBlend", "CLIPTextEncode"):
        assert body[name] == recorded[name]


async def test_model_lists_are_configurable(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        models={"checkpoints": ["b.safetensors", "a.safetensors"], "loras": ["l.safetensors"]},
    )
    async with Emulator(options) as emu:
        resp = await http.get(f"{emu.url}/models/checkpoints")
        assert await resp.json() == ["a.safetensors", "b.safetensors"]
        resp = await http.get(f"{emu.url}/object_info/LoraLoader")
        spec = (await resp.json())["LoraLoader"]["input"]["required"]["lora_name"]
        assert spec[0] == ["l.safetensors"]


async def test_default_models_include_sd15(emu: Emulator, http: aiohttp.ClientSession) -> None:
    resp = await http.get(f"{emu.url}/models/checkpoints")
    assert "v1-5-pruned-emaonly.safetensors" in await resp.json()


@pytest.mark.parametrize(
    ("origin", "status"),
    [(None, 200), ("null", 200), ("http://evil.example", 403), ("http://localhost:1", 403)],
)
async def test_origin_middleware(
    emu: Emulator, http: aiohttp.ClientSession, origin: str | None, status: int
) -> None:
    headers = {"Origin": origin} if origin else {}
    resp = await http.get(f"{emu.url}/system_stats", headers=headers)
    assert resp.status == status
    same = await http.get(f"{emu.url}/system_stats", headers={"Origin": emu.url})
    assert same.status == 200


async def test_origin_blocks_post_prompt_without_queueing(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    resp = await http.post(
        f"{emu.url}/prompt", json={"prompt": {}}, headers={"Origin": "http://evil.example"}
    )
    assert resp.status == 403
    assert await resp.read() == b""
    assert emu.executor.number == 0


async def test_options_answers_200(emu: Emulator, http: aiohttp.ClientSession) -> None:
    resp = await http.options(f"{emu.url}/prompt")
    assert resp.status == 200


async def test_unknown_route_is_404(emu: Emulator, http: aiohttp.ClientSession) -> None:
    resp = await http.get(f"{emu.url}/ws_not_a_route")
    assert resp.status == 404


async def test_index_is_html(emu: Emulator, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/api/"):
        resp = await http.get(emu.url + path)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
