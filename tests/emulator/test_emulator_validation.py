"""Conformance: each recorded `POST /prompt` validation case gets the recorded status and body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions
from tests._recordings import load_reference_json

MODELS = {
    "checkpoints": ["tiny-random-sd15.safetensors"],
    "controlnet": ["tiny-random-controlnet-sd15.safetensors"],
    "clip_vision": [],
    "ipadapter": [],
}


def _cases(name: str) -> list[tuple[str, dict[str, Any]]]:
    data = load_reference_json(name)
    if "cases" in data:
        return [(c["case"], c) for c in data["cases"]]
    return [(k, v) for k, v in data.items() if not k.startswith("_")]


@pytest.fixture
async def strict_emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    options = EmulatorOptions(
        output_dir=tmp_path / "output",
        input_dir=tmp_path / "input",
        temp_dir=tmp_path / "temp",
        models=MODELS,
        node_packs=("ipadapter_plus", "controlnet_aux"),
    )
    (tmp_path / "input").mkdir()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "input" / "example.png")
    async with Emulator(options) as emulator:
        yield emulator


async def _post(
    http: aiohttp.ClientSession, url: str, case: dict[str, Any]
) -> aiohttp.ClientResponse:
    if "request_raw" in case:
        return await http.post(url, data=case["request_raw"])
    if "request_body" in case:
        return await http.post(url, json=case["request_body"])
    body = case.get("request") or {"prompt": case["request_prompt"]}
    return await http.post(url, json=body)


def _canonical(body: Any) -> Any:
    """ComfyUI walks a node's inputs in set order: compare each node's errors as a set."""
    if not isinstance(body, dict) or "node_errors" not in body:
        return body
    out = dict(body)
    out["node_errors"] = {
        k: {**v, "errors": sorted(json.dumps(e, sort_keys=True) for e in v["errors"])}
        for k, v in body["node_errors"].items()
    }
    return out


def _check(status: int, ctype: str, body: Any, case: dict[str, Any]) -> None:
    assert status == case["status"]
    expected = case["body"]
    if isinstance(expected, str):
        assert body == expected
        assert ctype.startswith("text/plain")
        return
    assert ctype == "application/json; charset=utf-8"
    if status == 200:
        assert set(body) == {"prompt_id", "number", "node_errors"}
        assert _canonical(body)["node_errors"] == _canonical(expected)["node_errors"]
    else:
        assert _canonical(body) == _canonical(expected)


@pytest.mark.parametrize(("name", "case"), _cases("validation_errors.json"))
async def test_core_validation_case(
    strict_emu: Emulator,
    http: aiohttp.ClientSession,
    name: str,
    case: dict[str, Any],
) -> None:
    for url in (f"{strict_emu.url}/prompt", f"{strict_emu.url}/api/prompt"):
        resp = await _post(http, url, case)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        _check(resp.status, resp.headers.get("Content-Type", ""), body, case)


@pytest.mark.parametrize(("name", "case"), _cases("custom_nodes_validation.json"))
async def test_custom_nodes_validation_case(
    strict_emu: Emulator,
    http: aiohttp.ClientSession,
    name: str,
    case: dict[str, Any],
) -> None:
    resp = await _post(http, f"{strict_emu.url}/prompt", case)
    body = await resp.json()
    _check(resp.status, resp.headers.get("Content-Type", ""), body, case)


async def test_unknown_packs_are_not_loaded(emu: Emulator, http: aiohttp.ClientSession) -> None:
    resp = await http.get(f"{emu.url}/object_info/IPAdapterAdvanced")
    assert await resp.json() == {}
    resp = await http.get(f"{emu.url}/models")
    assert "ipadapter" not in await resp.json()


async def test_rejected_prompt_sends_no_ws_message(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=watcher") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "status"
        bad = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 0, "height": 1, "batch_size": 1, "color": 0},
            },
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "x"},
            },
        }
        resp = await http.post(f"{emu.url}/prompt", json={"prompt": bad, "client_id": "watcher"})
        assert resp.status == 400
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.2)


async def test_only_the_valid_branch_runs(
    strict_emu: Emulator, http: aiohttp.ClientSession
) -> None:
    case = load_reference_json("validation_errors.json")["one_bad_output_one_good"]
    resp = await http.post(f"{strict_emu.url}/prompt", json={"prompt": case["request_prompt"]})
    assert resp.status == 200
    pid = (await resp.json())["prompt_id"]
    for _ in range(500):
        if pid in strict_emu.executor.history:
            break
        await asyncio.sleep(0.01)
    entry = strict_emu.executor.history[pid]
    assert entry["prompt"][4] == ["2"]
    assert list(entry["outputs"]) == ["2"]
    assert entry["status"]["status_str"] == "success"


async def test_dependency_cycle_is_rejected(emu: Emulator, http: aiohttp.ClientSession) -> None:
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }
    resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert {e["type"] for v in body["node_errors"].values() for e in v["errors"]} == {
        "dependency_cycle"
    }
    assert set(body["node_errors"]) == {"1", "2"}
