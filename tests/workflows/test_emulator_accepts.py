"""Every golden graph is accepted by the emulator, which validates like ComfyUI 0.3.64."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.workflows import UPLOAD_PLACEHOLDER_PREFIX

from ._support import GOLDEN_DIR, MODELS

emulator = pytest.importorskip("storycore.emulator")


def _bind_placeholders(graph: dict[str, Any], input_dir: Path) -> dict[str, Any]:
    """Stand in for the engine's upload step: put a picture in input/ for each placeholder."""
    for node in graph.values():
        for name, value in node["inputs"].items():
            if isinstance(value, str) and value.startswith(UPLOAD_PLACEHOLDER_PREFIX):
                role, index, filename = value[len(UPLOAD_PLACEHOLDER_PREFIX) :].split("/", 2)
                server_name = f"{role}_{index}_{Path(filename).stem}.png"
                Image.new("RGB", (64, 64), "gray").save(input_dir / server_name)
                node["inputs"][name] = server_name
    return graph


async def test_emulator_accepts_every_golden_graph(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    Image.new("RGB", (64, 64), "white").save(input_dir / "example.png")
    options = emulator.EmulatorOptions(
        models=MODELS,
        node_packs=("ipadapter_plus", "controlnet_aux"),
        input_dir=input_dir,
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
    )
    goldens = sorted(GOLDEN_DIR.glob("*.json"))
    assert len(goldens) >= 15
    rejected: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=20)
    async with emulator.Emulator(options) as emu, aiohttp.ClientSession(timeout=timeout) as http:
        for path in goldens:
            graph = _bind_placeholders(json.loads(path.read_text(encoding="utf-8")), input_dir)
            async with http.post(f"{emu.url}/prompt", json={"prompt": graph}) as response:
                body = await response.json()
                if response.status != 200 or body.get("node_errors"):
                    rejected[path.stem] = (response.status, body)
        # the check bites: an unbound placeholder is refused like a missing input file
        unbound = json.loads((GOLDEN_DIR / "img2img.json").read_text(encoding="utf-8"))
        async with http.post(f"{emu.url}/prompt", json={"prompt": unbound}) as response:
            assert response.status == 400
    assert rejected == {}


async def test_outputs_land_in_the_shot_folder(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    options = emulator.EmulatorOptions(
        models=MODELS, input_dir=input_dir, output_dir=tmp_path / "output"
    )
    graph = _bind_placeholders(
        json.loads((GOLDEN_DIR / "img2img.json").read_text(encoding="utf-8")), input_dir
    )
    timeout = aiohttp.ClientTimeout(total=20)
    async with emulator.Emulator(options) as emu, aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(f"{emu.url}/prompt", json={"prompt": graph}) as response:
            assert response.status == 200
            prompt_id = (await response.json())["prompt_id"]
        entry: dict[str, Any] = {}
        for _ in range(200):  # bounded: at most ~10 s
            async with http.get(f"{emu.url}/history/{prompt_id}") as response:
                entry = (await response.json()).get(prompt_id, {})
            if entry.get("status", {}).get("completed"):
                break
            await asyncio.sleep(0.05)
    (image,) = entry["outputs"]["9"]["images"]
    assert image["subfolder"] == "storycore/lighthouse/s010"
    assert image["filename"].startswith("v1_")
    assert (tmp_path / "output" / image["subfolder"] / image["filename"]).is_file()
