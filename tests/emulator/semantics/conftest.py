"""The node-semantics tests run on both emulator profiles: what a node computes, saves and
reports is the same on ComfyUI 0.3.64 and on today's ComfyUI, except where a test says so."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from storycore.emulator import PROFILES, Emulator, EmulatorOptions


@pytest.fixture(params=PROFILES)
async def emu(
    request: pytest.FixtureRequest, emu_options: EmulatorOptions
) -> AsyncIterator[Emulator]:
    options = dataclasses.replace(emu_options, profile=request.param)
    async with Emulator(options) as emulator:
        yield emulator
