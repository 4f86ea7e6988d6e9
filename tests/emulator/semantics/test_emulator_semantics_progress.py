"""Progress frames from every sampling node, paced by the step time.

KSampler is compared with the recording ws_sd15_txt2img.jsonl; SamplerCustom,
SamplerCustomAdvanced and VAEDecodeTiled with derived_progress.json (derived from the ComfyUI
source; no recording of them exists).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions

from .._support import load_reference_json, load_transcript
from ._semantics import failure, run_prompt

REC: dict[str, Any] = load_reference_json("derived_progress.json")
CASES = sorted(k for k in REC if not k.startswith("_"))


def _progress(msgs: list[dict[str, Any]]) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {}
    for m in msgs:
        if m["type"] == "progress":
            d = m["data"]
            out.setdefault(d["node"], []).append([d["value"], d["max"]])
    return out


@pytest.mark.parametrize("name", CASES)
async def test_sampling_node_progress(
    emu: Emulator, http: aiohttp.ClientSession, name: str
) -> None:
    case = REC[name]
    msgs, entry = await run_prompt(emu, http, case["prompt"])
    assert entry["status"]["status_str"] == "success", failure(msgs)
    assert _progress(msgs) == case["progress"]


async def test_progress_frames_have_the_recorded_keys(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    recorded = next(
        e["data"]
        for e in load_transcript("ws_sd15_txt2img.jsonl")
        if e["kind"] == "ws_recv" and e.get("type") == "progress"
    )
    msgs, _ = await run_prompt(emu, http, REC["sampler_custom"]["prompt"])
    ours = next(m["data"] for m in msgs if m["type"] == "progress")
    assert sorted(ours) == sorted(recorded)


async def test_custom_sampler_steps_are_paced(
    emu_options: EmulatorOptions, http: aiohttp.ClientSession
) -> None:
    options = dataclasses.replace(emu_options, step_seconds=0.1)
    async with Emulator(options) as emu:
        start = time.monotonic()
        msgs, _ = await run_prompt(emu, http, REC["sampler_custom_advanced"]["prompt"])
        took = time.monotonic() - start
    assert len(_progress(msgs)["6"]) == 3
    assert took >= 0.3  # three steps of 0.1 s
