"""Graph-building options: the settings the builder needs, validated once (pure).

The lead maps the user's Settings onto :class:`GraphOptions`; every field is checked in
``__post_init__`` and a bad value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from storycore.errors import ConfigError
from storycore.panels import ControlKind

__all__ = [
    "DEPTH_PREPROCESSORS",
    "IPADAPTER_PRESETS",
    "IPADAPTER_WEIGHT_TYPES",
    "GraphOptions",
]

IPADAPTER_PRESETS: tuple[str, ...] = (
    "LIGHT - SD1.5 only (low strength)",
    "STANDARD (medium strength)",
    "VIT-G (medium strength)",
    "PLUS (high strength)",
    "PLUS FACE (portraits)",
    "FULL FACE - SD1.5 only (portraits stronger)",
)
IPADAPTER_WEIGHT_TYPES: tuple[str, ...] = (
    "linear",
    "ease in",
    "ease out",
    "ease in-out",
    "reverse in-out",
    "weak input",
    "weak output",
    "weak middle",
    "strong middle",
    "style transfer",
    "composition",
    "strong style transfer",
    "style and composition",
    "style transfer precise",
    "composition precise",
)
IPADAPTER_COMBINE: tuple[str, ...] = ("concat", "add", "subtract", "average", "norm average")
IPADAPTER_SCALING: tuple[str, ...] = ("V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty")
DEPTH_PREPROCESSORS: tuple[str, ...] = (
    "DepthAnythingPreprocessor",
    "DepthAnythingV2Preprocessor",
    "MiDaS-DepthMapPreprocessor",
    "Zoe-DepthMapPreprocessor",
)


def _bad(name: str, message: str, hint: str) -> ConfigError:
    return ConfigError(message, where=f"GraphOptions.{name}", hint=hint)


@dataclass(frozen=True)
class GraphOptions:
    """Defaults and switches for building panel graphs. All numbers are range-checked."""

    filename_root: str = "storycore"
    # ControlNet: one model file per control kind (names as ComfyUI lists them in models/controlnet)
    controlnet_pose: str = "control_v11p_sd15_openpose.pth"
    controlnet_depth: str = "control_v11f1p_sd15_depth.pth"
    controlnet_lineart: str = "control_v11p_sd15_lineart.pth"
    controlnet_canny: str = "control_v11p_sd15_canny.pth"
    controlnet_strength: float = 0.8
    controlnet_start: float = 0.0
    controlnet_end: float = 1.0
    # Preprocessing of control images (only for controls that ask for it: ControlImage.preprocess)
    preprocess: bool = True
    depth_preprocessor: str = "DepthAnythingPreprocessor"
    canny_low: float = 0.4
    canny_high: float = 0.8
    # IP-Adapter (ComfyUI_IPAdapter_plus)
    ipadapter_mode: Literal["unified", "files"] = "unified"
    ipadapter_preset: str = "STANDARD (medium strength)"
    ipadapter_model: str = "ip-adapter_sd15.safetensors"
    clip_vision_model: str = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    ipadapter_weight: float = 0.8
    ipadapter_weight_type: str = "linear"
    ipadapter_combine_embeds: str = "concat"
    ipadapter_embeds_scaling: str = "V only"
    ipadapter_start: float = 0.0
    ipadapter_end: float = 1.0
    ipadapter_noise: float = 0.0
    # img2img: the denoise used when a panel has an init image but asks for a full 1.0
    img2img_denoise: float = 0.6

    def __post_init__(self) -> None:
        self._check_names()
        self._check_range("controlnet_strength", 0.0, 2.0)
        self._check_range("controlnet_start", 0.0, 1.0)
        self._check_range("controlnet_end", 0.0, 1.0)
        self._check_order("controlnet_start", "controlnet_end")
        self._check_range("canny_low", 0.01, 0.99)
        self._check_range("canny_high", 0.01, 0.99)
        self._check_order("canny_low", "canny_high")
        self._check_range("ipadapter_weight", 0.0, 2.0)
        self._check_range("ipadapter_start", 0.0, 1.0)
        self._check_range("ipadapter_end", 0.0, 1.0)
        self._check_order("ipadapter_start", "ipadapter_end")
        self._check_range("ipadapter_noise", 0.0, 1.0)
        self._check_range("img2img_denoise", 0.01, 1.0)
        self._check_choice("ipadapter_mode", ("unified", "files"))
        self._check_choice("ipadapter_preset", IPADAPTER_PRESETS)
        self._check_choice("ipadapter_weight_type", IPADAPTER_WEIGHT_TYPES)
        self._check_choice("ipadapter_combine_embeds", IPADAPTER_COMBINE)
        self._check_choice("ipadapter_embeds_scaling", IPADAPTER_SCALING)
        self._check_choice("depth_preprocessor", DEPTH_PREPROCESSORS)
        if not isinstance(self.preprocess, bool):
            raise _bad("preprocess", "must be true or false", "set preprocess to true or false")

    def controlnet_model(self, kind: ControlKind) -> str:
        """The ControlNet model file for a control kind."""
        name: str = getattr(self, f"controlnet_{kind}")
        return name

    # -- checks -----------------------------------------------------------------------------

    def _check_names(self) -> None:
        string_fields = [f.name for f in fields(self) if f.type in ("str", str)]
        for name in string_fields:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise _bad(name, f"must be a non-empty text, got {value!r}", f"set {name}")
            if "\x00" in value or "\n" in value:
                raise _bad(name, "contains a control character", f"fix {name}")

    def _check_range(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(name, f"must be a number, got {value!r}", f"use a number in {low}..{high}")
        if not math.isfinite(value) or not low <= value <= high:
            raise _bad(name, f"{value} is outside {low}..{high}", f"use a number in {low}..{high}")

    def _check_order(self, first: str, second: str) -> None:
        if getattr(self, first) > getattr(self, second):
            raise _bad(
                first,
                f"{first} ({getattr(self, first)}) is after {second} ({getattr(self, second)})",
                f"make {first} at most {second}",
            )

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise _bad(name, f"{value!r} is not one of the known values", f"use one of {listed}")
