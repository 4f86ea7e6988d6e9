"""How heavy a graph is, and rough VRAM and time estimates (pure).

Per graph: node count, sampler steps x latent pixels (the work), the models it loads. The time
estimate is ``overhead + rate * steps * megapixels``; the rate starts from the device type in the
server's ``/system_stats`` and is replaced by the median of measured timings of earlier panels
once there are some. VRAM is the sum of typical model sizes plus activations per megapixel. Both
are estimates for planning and suggestions, never limits.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Calibration",
    "GraphComplexity",
    "MeasuredTiming",
    "ProjectComplexity",
    "analyze_graph",
    "analyze_project",
    "summarize_panels",
]

GIB = 1024**3
# seconds per (sampler step x megapixel), by device type, for an SD1.5-sized UNet
_DEFAULT_RATES = {"cuda": 0.12, "mps": 0.9, "xpu": 0.5, "directml": 0.6, "cpu": 40.0}
_OVERHEAD_S = {"cuda": 1.5, "cpu": 4.0}
_SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
_LATENT_SOURCES = frozenset(
    {"EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo", "EmptyMochiLatentVideo"}
)
_LOADERS: Mapping[str, tuple[str, str]] = {  # class -> (input holding the file, kind)
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoint"),
    "UNETLoader": ("unet_name", "diffusion_model"),
    "VAELoader": ("vae_name", "vae"),
    "LoraLoader": ("lora_name", "lora"),
    "LoraLoaderModelOnly": ("lora_name", "lora"),
    "ControlNetLoader": ("control_net_name", "controlnet"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
    "IPAdapterModelLoader": ("ipadapter_file", "ipadapter"),
    "IPAdapterUnifiedLoader": ("preset", "ipadapter_unified"),
    "CLIPLoader": ("clip_name", "text_encoder"),
    "DualCLIPLoader": ("clip_name1", "text_encoder"),
}
_SIZES_GIB: Mapping[str, float] = {
    "checkpoint": 2.1,
    "checkpoint_xl": 6.9,
    "checkpoint_flux": 16.0,
    "diffusion_model": 12.0,
    "vae": 0.2,
    "lora": 0.15,
    "controlnet": 0.7,
    "controlnet_xl": 2.5,
    "clip_vision": 1.2,
    "ipadapter": 0.1,
    "ipadapter_unified": 1.3,
    "text_encoder": 5.0,
}


def _size_key(kind: str, name: str) -> str:
    lowered = name.lower()
    if kind == "checkpoint" and "flux" in lowered:
        return "checkpoint_flux"
    if kind in ("checkpoint", "controlnet") and ("xl" in lowered or "sdxl" in lowered):
        return f"{kind}_xl"
    return kind


@dataclass(frozen=True)
class MeasuredTiming:
    """A finished render: its work (steps x latent megapixels) and the seconds it took."""

    step_megapixels: float
    seconds: float


@dataclass(frozen=True)
class Calibration:
    """Device facts and the time rate used for estimates."""

    device_type: str = "cuda"
    device_name: str = "unknown"
    vram_total: int | None = None
    vram_free: int | None = None
    seconds_per_step_mp: float = _DEFAULT_RATES["cuda"]
    overhead_s: float = _OVERHEAD_S["cuda"]
    measured: bool = False

    @classmethod
    def from_system_stats(
        cls, stats: Mapping[str, Any] | None, timings: Iterable[MeasuredTiming] = ()
    ) -> Calibration:
        device: Mapping[str, Any] = {}
        if stats:
            devices = stats.get("devices") or []
            if devices and isinstance(devices[0], Mapping):
                device = devices[0]
        dtype = str(device.get("type") or "cuda").lower()
        rate = _DEFAULT_RATES.get(dtype, _DEFAULT_RATES["cuda"])
        overhead = _OVERHEAD_S.get(dtype, _OVERHEAD_S["cuda"])
        samples = [
            t.seconds / t.step_megapixels
            for t in timings
            if t.step_megapixels > 0 and t.seconds > 0
        ]
        measured = bool(samples)
        if measured:
            rate = statistics.median(samples)
            overhead = 0.0
        return cls(
            device_type=dtype,
            device_name=str(device.get("name") or dtype),
            vram_total=_int_or_none(device.get("vram_total")),
            vram_free=_int_or_none(device.get("vram_free")),
            seconds_per_step_mp=rate,
            overhead_s=overhead,
            measured=measured,
        )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class GraphComplexity:
    shot_id: str
    node_count: int
    sampler_steps: int
    latent_pixels: int
    step_megapixels: float
    models: tuple[tuple[str, str], ...]
    est_vram_bytes: int
    est_seconds: float
    suggestions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "shot_id": self.shot_id,
            "node_count": self.node_count,
            "sampler_steps": self.sampler_steps,
            "latent_pixels": self.latent_pixels,
            "step_megapixels": round(self.step_megapixels, 4),
            "models": [list(m) for m in self.models],
            "est_vram_gib": round(self.est_vram_bytes / GIB, 2),
            "est_seconds": round(self.est_seconds, 1),
            "suggestions": list(self.suggestions),
        }


@dataclass(frozen=True)
class ProjectComplexity:
    panels: tuple[GraphComplexity, ...]
    calibration: Calibration
    total_seconds: float
    peak_vram_bytes: int
    checkpoint_switches: int
    suggestions: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "device": {"type": c.device_type, "name": c.device_name, "vram_total": c.vram_total},
            "calibrated_from_timings": c.measured,
            "seconds_per_step_megapixel": round(c.seconds_per_step_mp, 4),
            "total_seconds": round(self.total_seconds, 1),
            "peak_vram_gib": round(self.peak_vram_bytes / GIB, 2),
            "checkpoint_switches": self.checkpoint_switches,
            "suggestions": list(self.suggestions),
            "panels": [p.to_dict() for p in self.panels],
        }


def _latent_size(graph: Mapping[str, Any]) -> tuple[int, int]:
    for node in graph.values():
        inputs = node.get("inputs") or {}
        if node.get("class_type") in _LATENT_SOURCES or node.get("class_type") == "ImageScale":
            width, height = inputs.get("width"), inputs.get("height")
            if isinstance(width, int) and isinstance(height, int):
                return width, height
    return 512, 512


def analyze_graph(
    shot_id: str, graph: Mapping[str, Any], calibration: Calibration | None = None
) -> GraphComplexity:
    """Complexity, estimates and suggestions for one graph."""
    cal = calibration or Calibration()
    width, height = _latent_size(graph)
    pixels = width * height
    steps = 0
    models: list[tuple[str, str]] = []
    for node in graph.values():
        class_type = node.get("class_type")
        inputs = node.get("inputs") or {}
        if class_type in _SAMPLERS:
            value = inputs.get("steps", 20)
            steps += value if isinstance(value, int) else 20
        if class_type in _LOADERS:
            key, kind = _LOADERS[class_type]
            models.append((kind, str(inputs.get(key, ""))))
    step_mp = steps * pixels / 1e6
    model_bytes = sum(_SIZES_GIB.get(_size_key(k, n), 0.5) for k, n in set(models)) * GIB
    activation = (0.6 + 1.2 * pixels / 1e6) * GIB
    vram = int(model_bytes + activation)
    seconds = cal.overhead_s + cal.seconds_per_step_mp * step_mp
    tips: list[str] = []
    if cal.vram_total and vram > 0.9 * cal.vram_total:
        tips.append(
            f"about {vram / GIB:.1f} GiB needed, the device has {cal.vram_total / GIB:.1f} GiB: "
            "lower the resolution or use fewer ControlNets"
        )
    if seconds > 120:
        tips.append(f"about {seconds:.0f} s per image: lower the resolution or use fewer steps")
    if steps > 40:
        tips.append(f"{steps} steps rarely beat 30 for storyboards: use fewer steps")
    return GraphComplexity(
        shot_id=shot_id,
        node_count=len(graph),
        sampler_steps=steps,
        latent_pixels=pixels,
        step_megapixels=step_mp,
        models=tuple(sorted(set(models))),
        est_vram_bytes=vram,
        est_seconds=seconds,
        suggestions=tuple(tips),
    )


def analyze_project(
    graphs: Sequence[tuple[str, Mapping[str, Any]]],
    system_stats: Mapping[str, Any] | None = None,
    timings: Iterable[MeasuredTiming] = (),
) -> ProjectComplexity:
    """Per-panel and whole-project complexity, in render order."""
    cal = Calibration.from_system_stats(system_stats, timings)
    return summarize_panels([analyze_graph(shot, graph, cal) for shot, graph in graphs], cal)


def summarize_panels(analyzed: Sequence[GraphComplexity], cal: Calibration) -> ProjectComplexity:
    """The whole-project view of panels already analysed with ``cal`` (in render order)."""
    panels = tuple(analyzed)
    checkpoints = [next((n for k, n in p.models if k == "checkpoint"), None) for p in panels]
    switches = sum(1 for a, b in itertools.pairwise(checkpoints) if a != b)
    tips: list[str] = []
    distinct = len({c for c in checkpoints if c})
    if switches > max(0, distinct - 1):
        tips.append(
            f"the checkpoint changes {switches} times in shot order: render panels grouped by "
            f"checkpoint to load each of the {distinct} checkpoints once"
        )
    total = sum(p.est_seconds for p in panels)
    if total > 3600:
        tips.append(f"about {total / 3600:.1f} h in all: lower the resolution or the steps")
    return ProjectComplexity(
        panels=panels,
        calibration=cal,
        total_seconds=total,
        peak_vram_bytes=max((p.est_vram_bytes for p in panels), default=0),
        checkpoint_switches=switches,
        suggestions=tuple(tips),
    )
