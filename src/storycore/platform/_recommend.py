"""Whether a model fits the GPU, and what size and steps suit each panel. Pure functions.

The VRAM estimate is deliberately simple: the weights (the file size) plus working memory that
grows with the picture's pixel count, measured from the family's native size. It is a planning
aid that errs on the safe side, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from storycore.platform._gpu import GPUInfo

__all__ = [
    "FAMILY_NATIVE_SIZE",
    "Fit",
    "PanelAdvice",
    "PanelLike",
    "estimate_vram",
    "fits_gpu",
    "recommend_panels",
]

GIB = 1024**3
#: Long side each family was trained at.
FAMILY_NATIVE_SIZE = {
    "sd15": 512,
    "sd2": 768,
    "sdxl": 1024,
    "sdxl_refiner": 1024,
    "sd3": 1024,
    "flux": 1024,
    "flux_schnell": 1024,
}
#: Working memory (GiB) at the native size, on top of the weights.
_WORKING_GIB = {"sd15": 1.2, "sd2": 1.6, "sdxl": 2.5, "sdxl_refiner": 2.5, "sd3": 3.0}
_WORKING_DEFAULT_GIB = 4.0
#: (good steps, most that still helps)
_STEPS = {"flux_schnell": (4, 8), "flux": (20, 50), "sd3": (28, 60)}
_STEPS_DEFAULT = (25, 60)


class PanelLike(Protocol):
    """What a panel needs to offer (``storycore.panels.Panel`` does)."""

    @property
    def shot_id(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def steps(self) -> int: ...


@dataclass(frozen=True)
class Fit:
    """``verdict``: ``fits``, ``offload`` (runs with weights partly in RAM: --lowvram, slower),
    ``cpu`` (no GPU) or ``too_big`` (not even RAM holds it)."""

    verdict: str
    need_bytes: int
    vram_bytes: int | None
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict in ("fits", "offload", "cpu")


def estimate_vram(model_bytes: int, family: str, width: int, height: int) -> int:
    """Bytes of VRAM a txt2img run needs: weights + working memory scaled by pixels."""
    native = FAMILY_NATIVE_SIZE.get(family, 1024)
    scale = (width * height) / float(native * native)
    working = _WORKING_GIB.get(family, _WORKING_DEFAULT_GIB) * max(0.25, scale)
    return int(model_bytes + working * GIB)


def _usable_vram(gpu: GPUInfo) -> int | None:
    if gpu.memory_total is None:
        return None
    share = 0.7 if gpu.unified_memory else 0.92  # macOS gives the GPU about 70 % of RAM
    return int(gpu.memory_total * share)


def fits_gpu(
    model_bytes: int,
    family: str,
    gpu: GPUInfo | None,
    *,
    width: int | None = None,
    height: int | None = None,
    ram_bytes: int | None = None,
) -> Fit:
    """Whether a model of ``model_bytes`` renders ``width`` x ``height`` on ``gpu``."""
    native = FAMILY_NATIVE_SIZE.get(family, 1024)
    need = estimate_vram(model_bytes, family, width or native, height or native)
    if gpu is None:
        return Fit("cpu", need, None, "no GPU: runs on the CPU, minutes per panel")
    usable = _usable_vram(gpu)
    if usable is None:
        return Fit("fits", need, None, f"{gpu.name}: memory unknown, cannot check")
    if need <= usable:
        return Fit("fits", need, gpu.memory_total, f"fits in {gpu.name} ({usable / GIB:.1f} GiB)")
    if ram_bytes is None or model_bytes <= ram_bytes * 0.8:
        return Fit(
            "offload",
            need,
            gpu.memory_total,
            f"needs about {need / GIB:.1f} GiB, {gpu.name} has {usable / GIB:.1f} GiB: "
            "runs with --lowvram (weights partly in RAM, slower)",
        )
    return Fit(
        "too_big",
        need,
        gpu.memory_total,
        f"needs about {need / GIB:.1f} GiB; neither {gpu.name} nor the RAM holds it: "
        "use a smaller (fp8 or pruned) model",
    )


@dataclass(frozen=True)
class PanelAdvice:
    """What to change for one panel (``ok`` when nothing), with the suggested values."""

    panel_id: str
    width: int
    height: int
    steps: int
    suggested_width: int
    suggested_height: int
    suggested_steps: int
    fit: Fit
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.notes


def _round_down(value: float, multiple: int) -> int:
    return max(multiple, int(value // multiple) * multiple)


def _native_area(width: int, height: int, native: int) -> tuple[int, int]:
    scale = math.sqrt((native * native) / float(width * height))
    return _round_down(width * scale, 64), _round_down(height * scale, 64)


def recommend_panels(
    panels: Sequence[PanelLike],
    *,
    family: str,
    model_bytes: int,
    gpu: GPUInfo | None,
    ram_bytes: int | None = None,
) -> list[PanelAdvice]:
    """Advice per panel: multiple-of-8 sizes, the family's native size, sensible steps, and
    whether the render fits the GPU at the suggested size."""
    native = FAMILY_NATIVE_SIZE.get(family, 1024)
    good_steps, max_steps = _STEPS.get(family, _STEPS_DEFAULT)
    advice: list[PanelAdvice] = []
    for panel in panels:
        notes: list[str] = []
        width, height, steps = panel.width, panel.height, panel.steps
        if width % 8 or height % 8:
            width, height = _round_down(width, 8), _round_down(height, 8)
            notes.append(
                f"{panel.width}x{panel.height} is not a multiple of 8: use {width}x{height}"
            )
        area = width * height
        if area > 1.6 * native * native:
            width, height = _native_area(width, height, native)
            notes.append(
                f"larger than {family}'s native {native}px area: render {width}x{height} "
                "and upscale, or expect repeated subjects"
            )
        elif area < 0.35 * native * native:
            width, height = _native_area(width, height, native)
            notes.append(f"well below {family}'s native size: {width}x{height} looks better")
        if steps > max_steps:
            notes.append(f"{steps} steps adds time, not quality, for {family}: use {good_steps}")
            steps = good_steps
        if gpu is None and steps > 20:
            notes.append("on the CPU every step costs seconds: 20 steps or fewer")
            steps = 20
        fit = fits_gpu(model_bytes, family, gpu, width=width, height=height, ram_bytes=ram_bytes)
        if fit.verdict in ("offload", "too_big"):
            notes.append(fit.message)
        advice.append(
            PanelAdvice(
                panel_id=panel.shot_id,
                width=panel.width,
                height=panel.height,
                steps=panel.steps,
                suggested_width=width,
                suggested_height=height,
                suggested_steps=steps,
                fit=fit,
                notes=tuple(notes),
            )
        )
    return advice
