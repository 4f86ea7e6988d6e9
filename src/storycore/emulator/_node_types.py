"""The values that flow along the emulator's links, and the node call's context and result.

An IMAGE is a list of RGB ``PIL.Image.Image`` (one per batch item), a MASK a list of ``L``
images; model-side values are small descriptive records (which checkpoint, which prompt, which
seed) that :func:`storycore.emulator._nodes.vae_decode` turns into a placeholder picture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "Audio",
    "Conditioning",
    "Guider",
    "Latent",
    "ModelRef",
    "NodeContext",
    "NodeResult",
    "Noise",
    "Sigmas",
    "Video",
]


@dataclass(frozen=True)
class ModelRef:
    kind: str
    name: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conditioning:
    text: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch: int
    seed: int | None = None
    prompt: str = ""
    notes: tuple[str, ...] = ()
    base: tuple[Image.Image, ...] = ()


@dataclass(frozen=True)
class Sigmas:
    """A noise schedule: ``steps`` sampling steps (``steps + 1`` sigmas in ComfyUI)."""

    steps: int


@dataclass(frozen=True)
class Noise:
    seed: int | None


@dataclass(frozen=True)
class Guider:
    model: Any
    positive: Any


@dataclass(frozen=True)
class Video:
    frames: tuple[Image.Image, ...]
    fps: float


@dataclass(frozen=True)
class Audio:
    """Mono or stereo 16-bit samples (ComfyUI: ``{"waveform": [B, C, T], "sample_rate"}``)."""

    sample_rate: int
    channels: int
    seconds: float
    batch: int = 1


@dataclass
class NodeContext:
    unique_id: str
    class_type: str
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    prompt: Mapping[str, Any]
    extra_pnginfo: Mapping[str, Any] | None
    model_files: Callable[[str], list[str]]
    return_types: list[Any] = field(default_factory=list)
    profile: str = "0.3.64"  # the ComfyUI generation played (_profiles.py)


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None
