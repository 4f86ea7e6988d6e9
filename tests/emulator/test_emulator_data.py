"""The recordings shipped as package data are the reference recordings, unchanged."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import pytest

FILES = [
    "object_info.json",
    "object_info_custom_nodes.json",
    "system_stats.json",
    "features.json",
    "extensions.json",
    "embeddings.json",
    "models.json",
]


@pytest.mark.parametrize("name", FILES)
def test_packaged_recording_is_identical(reference_dir: Path, name: str) -> None:
    data = resources.files("storycore.comfyui.emulator").joinpath("data")
    packed = data.joinpath(name + ".gz")
    content = (
        gzip.decompress(packed.read_bytes())
        if packed.is_file()
        else data.joinpath(name).read_bytes()
    )
    assert content == (reference_dir / name).read_bytes()
