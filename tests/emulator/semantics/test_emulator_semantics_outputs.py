"""Every core output node reports what ComfyUI reports, in ``executed`` and in history.

Compared with tests/data/comfyui-reference/derived_output_nodes.json (derived from the ComfyUI
0.3.64 source, file @ commit per case; no recording of these nodes exists).
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator

from .._support import load_reference_json
from ._semantics import failure, run_prompt

REC: dict[str, Any] = load_reference_json("derived_output_nodes.json")
CASES = sorted(k for k in REC if not k.startswith("_") and "ui" in REC[k])


@pytest.mark.parametrize("name", CASES)
async def test_output_node_ui(emu: Emulator, http: aiohttp.ClientSession, name: str) -> None:
    case = REC[name]
    # Today's nodes report some outputs differently (``ui_current``, with its source).
    want = case.get("ui_current", case["ui"]) if emu.options.profile == "current" else case["ui"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    assert entry["outputs"] == want
    executed = {m["data"]["node"]: m["data"]["output"] for m in msgs if m["type"] == "executed"}
    assert executed == want
    for ui in want.values():
        for item in ui.get("images", []) + ui.get("latents", []) + ui.get("audio", []):
            assert (emu.output_dir / item["subfolder"] / item["filename"]).is_file()


@pytest.mark.parametrize("name", ["save_animated_webp", "save_animated_png"])
async def test_animated_files_hold_every_frame(
    emu: Emulator, http: aiohttp.ClientSession, name: str
) -> None:
    case = REC[name]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    item = next(iter(case["ui"].values()))["images"][0]
    with Image.open(emu.output_dir / item["subfolder"] / item["filename"]) as img:
        assert getattr(img, "n_frames", 1) == case["frames"]


async def test_saved_latent_is_a_safetensors_file(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    case = REC["save_latent"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    data = (emu.output_dir / "latents" / "ComfyUI_00001_.latent").read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    assert header["latent_tensor"]["shape"] == case["latent_shape"]
    assert header["latent_tensor"]["dtype"] == "F32"
    assert "latent_format_version_0" in header
    assert json.loads(header["__metadata__"]["prompt"]) == case["prompt"]
    start, end = header["latent_tensor"]["data_offsets"]
    assert end - start == 4 * 2 * 4 * 6 * 8
    assert len(data) == 8 + size + end


async def test_second_save_counts_up(emu: Emulator, http: aiohttp.ClientSession) -> None:
    case = REC["save_animated_webp"]
    await run_prompt(emu, http, case["prompt"])
    await http.post(f"{emu.url}/free", json={"free_memory": True})
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["outputs"]["2"]["images"][0]["filename"] == "anim_00002_.webp", failure(msgs)


async def test_mask_preview_writes_a_temp_image(emu: Emulator, http: aiohttp.ClientSession) -> None:
    case = REC["mask_preview"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    want = case["ui_pattern"]["2"]["images"][0]
    (got,) = entry["outputs"]["2"]["images"]
    assert re.fullmatch(want["filename"], got["filename"]), got
    assert (got["subfolder"], got["type"]) == (want["subfolder"], want["type"])
    with Image.open(emu.temp_dir / got["filename"]) as img:
        assert img.size == (16, 8)
        assert img.convert("L").getpixel((3, 3)) == 128
