"""Computed values flow: primitives and text nodes feed real values into widget inputs.

Compared with tests/data/comfyui-reference/derived_value_nodes.json (derived from ComfyUI's
nodes_primitive.py / nodes_string.py / nodes_preview_any.py; no recording of these exists).
"""

from __future__ import annotations

from datetime import datetime

import aiohttp
from PIL import Image

from storycore.emulator import Emulator
from storycore.emulator._prefix import expand_server_vars, format_date, frontend_replacements

from .._support import load_reference_json
from ._semantics import failure, run_prompt

REC = load_reference_json("derived_value_nodes.json")


async def test_primitive_int_feeds_empty_image_width(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    case = REC["primitive_int_feeds_width"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    saved = entry["outputs"]["3"]["images"][0]["filename"]
    with Image.open(emu.output_dir / saved) as img:
        assert list(img.size) == case["expected_image_size"]


async def test_string_nodes_feed_the_filename_prefix(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    case = REC["primitive_string_feeds_prefix"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    assert entry["outputs"] == case["expected_ui"]
    assert (emu.output_dir / "shot_001_00001_.png").is_file()


async def test_text_nodes_give_comfyui_values(emu: Emulator, http: aiohttp.ClientSession) -> None:
    case = REC["string_nodes_into_preview_any"]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    assert entry["outputs"] == case["expected_ui"]
    executed = {m["data"]["node"]: m["data"]["output"] for m in msgs if m["type"] == "executed"}
    assert executed == case["expected_ui"]


def test_server_side_prefix_variables_expand_like_folder_paths() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7).timetuple()
    got = expand_server_vars(
        "%year%-%month%-%day%/%hour%%minute%%second%_%width%x%height%", 64, 48, now
    )
    assert got == "2026-03-04/050607_64x48"
    # The browser's variables are not the server's: they reach a real server literally.
    assert expand_server_vars("%date:yyyy%_%Seed.value%", 1, 1, now) == "%date:yyyy%_%Seed.value%"


def test_frontend_replacements_on_an_api_prompt() -> None:
    prompt = {
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768}},
        "5": {"class_type": "KSampler", "inputs": {"seed": 42}, "_meta": {"title": "Main/Sampler"}},
        "6": {"class_type": "PrimitiveString", "inputs": {"value": 'a:b"c'}},
    }
    now = datetime(2026, 3, 4, 5, 6, 7)
    text = "%date:yyyy-MM-dd%/%EmptyLatentImage.width%_%Main/Sampler.seed%_%PrimitiveString.value%"
    assert frontend_replacements(text, prompt, now) == "2026-03-04/512_42_a_b_c"
    # Unknown node or widget, and the server's own %width%: left as they are.
    assert frontend_replacements("%Nope.x%_%width%", prompt, now) == "%Nope.x%_%width%"
    assert format_date("yy d/M h:m:s yyy", now) == "26 4/3 5:6:7 yyy"


async def test_prefix_with_date_variables_is_written_like_the_server(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 24, "height": 16, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "%year%/s_%width%x%height%"},
        },
    }
    msgs, entry = await run_prompt(emu, http, prompt)
    assert entry["status"]["status_str"] == "success", failure(msgs)
    image = entry["outputs"]["2"]["images"][0]
    year = str(datetime.now().year)
    assert image == {"filename": "s_24x16_00001_.png", "subfolder": year, "type": "output"}
