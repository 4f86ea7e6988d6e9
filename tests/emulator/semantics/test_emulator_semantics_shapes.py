"""Image shape semantics: the sizes and batch counts a real ComfyUI gives.

Compared with tests/data/comfyui-reference/derived_image_shapes.json (derived from the ComfyUI
source, file @ commit per case; no recording of these exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator
from storycore.emulator._node_shapes import SHAPE_IMPLEMENTATIONS
from storycore.emulator._node_types import NodeContext

from .._support import load_reference_json
from ._semantics import failure, run_prompt

REC: dict[str, Any] = load_reference_json("derived_image_shapes.json")
CASES = sorted(k for k in REC if not k.startswith("_"))


def _saved(emu: Emulator, entry: dict[str, Any], node: str) -> list[tuple[int, int]]:
    sizes = []
    for image in entry["outputs"][node]["images"]:
        path = emu.output_dir / image["subfolder"] / image["filename"]
        with Image.open(path) as img:
            sizes.append(img.size)
    return sizes


@pytest.mark.parametrize("name", CASES)
async def test_shape(emu: Emulator, http: aiohttp.ClientSession, name: str) -> None:
    case = REC[name]
    prompt = case["prompt"]
    msgs, entry = await run_prompt(emu, http, prompt)
    assert entry["status"]["status_str"] == "success", failure(msgs)
    saves = [uid for uid, n in prompt.items() if n["class_type"] == "SaveImage"]
    first = _saved(emu, entry, saves[0])
    want = case["expected"]
    assert len(first) == want["count"]
    assert {s for s in first} == {tuple(want["size"])}
    if "expected_mask" in case:
        mask = _saved(emu, entry, saves[1])
        assert len(mask) == case["expected_mask"]["count"]
        assert mask[0] == tuple(case["expected_mask"]["size"])


async def test_pad_mask_is_white_outside_and_feathered_inside(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    msgs, entry = await run_prompt(emu, http, REC["pad_for_outpaint"]["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    image = entry["outputs"]["5"]["images"][0]
    with Image.open(emu.output_dir / image["filename"]) as img:
        mask = img.convert("L")
        # left 8, top 0, right 16, bottom 8, feathering 4 on 64x48 (nodes.py ImagePadForOutpaint)
        assert mask.getpixel((2, 20)) == 255  # the new left border
        assert mask.getpixel((8 + 32, 20)) == 0  # the middle of the picture
        assert mask.getpixel((8, 20)) == 255  # d = 0 at the padded left side: (4/4)^2
        assert mask.getpixel((8 + 2, 20)) == round(((4 - 2) / 4) ** 2 * 255)
        assert mask.getpixel((8 + 32, 1)) == 0  # top was not padded: no feather there


def test_total_pixels_with_resolution_steps_as_todays_comfyui(tmp_path: Path) -> None:
    # nodes_post_processing.py @ 0c853489: round(side * sqrt(MP * 1024^2 / (W * H)) / r) * r.
    ctx = NodeContext("1", "ImageScaleToTotalPixels", tmp_path, tmp_path, tmp_path, {}, None, list)
    impl = SHAPE_IMPLEMENTATIONS["ImageScaleToTotalPixels"]
    inputs = {"image": [Image.new("RGB", (64, 48))], "upscale_method": "area", "megapixels": 0.01}
    steps = impl(ctx, {**inputs, "resolution_steps": 8}).outputs[0]
    assert steps[0].size == (120, 88)
    assert impl(ctx, inputs).outputs[0][0].size == (118, 89)
