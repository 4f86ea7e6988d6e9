"""Fixtures: a running in-process emulator with private folders, and an HTTP session."""

from __future__ import annotations

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
