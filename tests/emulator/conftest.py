"""Fixtures: a running in-process emulator with private folders, and an HTTP session."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storycore.emulator import Emulator, EmulatorOptions


@pytest.fixture
def emu_options(tmp_path: Path) -> EmulatorOptions:
    return EmulatorOptions(
        output_dir=tmp_path / "output", input_dir=tmp_path / "input", temp_dir=tmp_path / "temp"
    )


@pytest.fixture
async def emu(emu_options: EmulatorOptions) -> AsyncIterator[Emulator]:
    async with Emulator(emu_options) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


@pytest.fixture
async def emu_current(emu_options: EmulatorOptions) -> AsyncIterator[Emulator]:
    """An emulator playing today's ComfyUI (``profile="current"``)."""
    async with Emulator(dataclasses.replace(emu_options, profile="current")) as emulator:
        yield emulator


@pytest.fixture
async def emu_slow_current(emu_options: EmulatorOptions) -> AsyncIterator[Emulator]:
    """``current``, with nodes that take a while (a job stays running and others pending)."""
    options = dataclasses.replace(emu_options, profile="current", node_seconds=0.4)
    async with Emulator(options) as emulator:
        yield emulator
