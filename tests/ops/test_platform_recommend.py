"""Whether models fit, and panel advice."""

from __future__ import annotations

from dataclasses import dataclass

from storycore.platform import GPUInfo, estimate_vram, fits_gpu, recommend_panels

GIB = 1024**3


@dataclass(frozen=True)
class P:
    shot_id: str
    width: int
    height: int
    steps: int


def _gpu(gib: float) -> GPUInfo:
    return GPUInfo("nvidia", 0, f"{gib:g} GiB card", memory_total=int(gib * GIB), source="nvml")


def test_fit_verdicts() -> None:
    sdxl = int(6.5 * GIB)
    assert fits_gpu(sdxl, "sdxl", _gpu(24)).verdict == "fits"
    assert fits_gpu(sdxl, "sdxl", _gpu(6), ram_bytes=32 * GIB).verdict == "offload"
    too_big = fits_gpu(int(23 * GIB), "flux", _gpu(8), ram_bytes=16 * GIB)
    assert too_big.verdict == "too_big" and not too_big.ok
    assert fits_gpu(sdxl, "sdxl", None).verdict == "cpu"
    # Bigger pictures need more memory.
    assert estimate_vram(sdxl, "sdxl", 2048, 2048) > estimate_vram(sdxl, "sdxl", 1024, 1024)
    assert fits_gpu(2 * GIB, "sd15", _gpu(4), width=512, height=512).verdict == "fits"
    assert fits_gpu(2 * GIB, "sd15", _gpu(4), width=2048, height=2048).verdict == "offload"


def test_unified_memory_counts_only_the_gpu_share() -> None:
    mac = GPUInfo("apple", 0, "Apple M1", memory_total=8 * GIB, unified_memory=True)
    pc = GPUInfo("nvidia", 0, "8 GiB card", memory_total=8 * GIB)
    model = int(4.5 * GIB)
    assert fits_gpu(model, "sdxl", pc).verdict == "fits"
    assert fits_gpu(model, "sdxl", mac).verdict == "offload"


def test_panel_advice() -> None:
    panels = [
        P("ok", 1024, 576, 25),
        P("odd", 1023, 577, 25),
        P("huge", 2048, 2048, 30),
        P("tiny", 256, 256, 30),
        P("slow", 1024, 1024, 150),
    ]
    advice = {
        a.panel_id: a
        for a in recommend_panels(panels, family="sdxl", model_bytes=int(6.5 * GIB), gpu=_gpu(24))
    }
    assert advice["ok"].ok and advice["ok"].suggested_width == 1024
    assert (advice["odd"].suggested_width, advice["odd"].suggested_height) == (1016, 576)
    huge = advice["huge"]
    assert (huge.suggested_width, huge.suggested_height) == (1024, 1024)
    assert "upscale" in huge.notes[0]
    assert advice["tiny"].suggested_width == 1024
    assert advice["slow"].suggested_steps == 25
    assert all(a.fit.verdict == "fits" for a in advice.values())


def test_panel_advice_on_small_cards_and_cpu() -> None:
    panels = [P("a", 1024, 1024, 30)]
    (small,) = recommend_panels(
        panels, family="sdxl", model_bytes=int(6.5 * GIB), gpu=_gpu(6), ram_bytes=32 * GIB
    )
    assert small.fit.verdict == "offload" and any("--lowvram" in n for n in small.notes)
    (cpu,) = recommend_panels(panels, family="sd15", model_bytes=2 * GIB, gpu=None)
    assert cpu.suggested_steps == 20
    assert (cpu.suggested_width, cpu.suggested_height) == (512, 512)
    (schnell,) = recommend_panels(
        [P("s", 1024, 1024, 20)], family="flux_schnell", model_bytes=12 * GIB, gpu=_gpu(24)
    )
    assert schnell.suggested_steps == 4
