"""Sampling nodes and the progress each one reports.

:func:`progress_plan` says, for a node about to run, how many ``progress`` frames it sends and
with which ``max``, following ComfyUI:

- ``KSampler``: one per step (nodes.py common_ksampler -> latent_preview.prepare_callback,
  ``max`` = steps; the recording ws_sd15_txt2img.jsonl shows value 1..steps);
- ``KSamplerAdvanced``: the sigmas sliced to ``[start_at_step:end_at_step]``
  (comfy/samplers.py KSampler.sample), so ``min(end, steps) - start`` frames, none when empty;
- ``SamplerCustom`` / ``SamplerCustomAdvanced``: ``len(sigmas) - 1`` frames
  (comfy_extras/nodes_custom_sampler.py @ be91880b: prepare_callback(model, sigmas.shape[-1]
  - 1));
- ``VAEDecodeTiled``: one per tile over three passes, ``max`` =
  ``batch * sum(get_tiled_scale_steps)`` for tiles (t, t), (t/2, 2t), (2t, t/2) in latent
  pixels (comfy/sd.py VAE.decode_tiled_, comfy/utils.py get_tiled_scale_steps and
  tiled_scale_multidim, which visits ``range(0, size - overlap, tile - overlap)`` positions, or
  one when the latent fits a tile). The node first clamps ``overlap`` to ``tile_size // 4``
  (nodes.py VAEDecodeTiled).

The executor paces every frame by ``step_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ._node_types import (
    Conditioning,
    Guider,
    Latent,
    ModelRef,
    NodeContext,
    NodeResult,
    Noise,
    Sigmas,
)

__all__ = ["SAMPLING_IMPLEMENTATIONS", "ProgressPlan", "progress_plan", "sample_latent"]

Impl = Callable[[NodeContext, dict[str, Any]], NodeResult]


@dataclass(frozen=True)
class ProgressPlan:
    frames: int  # how many progress frames the node sends (value 1..frames)
    maximum: int  # the ``max`` of each frame
    previews: bool  # whether a sampler preview image comes with each frame


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _positions(size: int, tile: int, overlap: int) -> int:
    if size <= tile:
        return 1
    return len(range(0, size - overlap, max(1, tile - overlap)))


def _tiles(lat: Latent, tile_size: int, overlap: int) -> tuple[int, int]:
    if tile_size < overlap * 4:
        overlap = tile_size // 4
    t, o = max(1, tile_size // 8), overlap // 8
    w, h = max(1, lat.width // 8), max(1, lat.height // 8)
    maximum = done = 0
    for tx, ty in ((t, t), (t // 2, t * 2), (t * 2, t // 2)):
        tx, ty = max(1, tx), max(1, ty)
        if tx - o > 0 and ty - o > 0:
            maximum += math.ceil(h / (ty - o)) * math.ceil(w / (tx - o))
        done += _positions(h, ty, o) * _positions(w, tx, o)
    return lat.batch * done, lat.batch * maximum


def progress_plan(class_type: str, inputs: dict[str, Any]) -> ProgressPlan | None:
    """The progress a node reports while it runs, or None for a node without a bar."""
    if class_type == "KSampler":
        steps = _int(inputs.get("steps"), 1)
        return ProgressPlan(steps, steps, True)
    if class_type == "KSamplerAdvanced":
        steps = _int(inputs.get("steps"), 1)
        start = _int(inputs.get("start_at_step"), 0)
        end = min(_int(inputs.get("end_at_step"), steps), steps)
        n = max(0, end - start)
        return ProgressPlan(n, n, True)
    if class_type in ("SamplerCustom", "SamplerCustomAdvanced"):
        sigmas = inputs.get("sigmas")
        n = sigmas.steps if isinstance(sigmas, Sigmas) else 1
        return ProgressPlan(n, n, True)
    if class_type == "VAEDecodeTiled":
        lat = inputs.get("samples")
        if not isinstance(lat, Latent):
            return None
        done, maximum = _tiles(
            lat, _int(inputs.get("tile_size"), 512), _int(inputs.get("overlap"), 64)
        )
        return ProgressPlan(done, maximum, False)
    return None


def sample_latent(
    latent: Latent, model: Any, positive: Any, seed: int | None, summary: str
) -> Latent:
    """The latent a sampler hands on: same size and batch, with what made it noted."""
    notes: list[str] = []
    if isinstance(model, ModelRef):
        notes.append(f"model {model.name}")
        notes.extend(model.notes)
    if isinstance(positive, Conditioning):
        notes.extend(positive.notes)
    notes.append(summary)
    text = positive.text if isinstance(positive, Conditioning) else ""
    return replace(latent, seed=seed, prompt=text, notes=tuple(notes))


def _scheduler(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # BasicScheduler: denoise < 1 computes steps / denoise sigmas and keeps the last steps + 1;
    # denoise 0 gives an empty schedule.
    steps = _int(i.get("steps"), 1)
    if float(i.get("denoise", 1.0)) <= 0:
        steps = 0
    return NodeResult((Sigmas(steps),))


def _split_sigmas(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # SplitSigmas: sigmas[:step + 1], sigmas[step:].
    sig: Sigmas = i["sigmas"]
    step = min(_int(i.get("step"), 0), sig.steps)
    return NodeResult((Sigmas(step), Sigmas(sig.steps - step)))


def _random_noise(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Noise(_int(i.get("noise_seed"), 0)),))


def _disable_noise(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Noise(None),))


def _cfg_guider(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Guider(i.get("model"), i.get("positive", i.get("conditioning"))),))


def _sampler_custom(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    lat: Latent = i["latent_image"]
    seed = _int(i.get("noise_seed"), 0) if i.get("add_noise", True) else None
    sig = i.get("sigmas")
    steps = sig.steps if isinstance(sig, Sigmas) else "?"
    sampler = getattr(i.get("sampler"), "name", "?")
    out = sample_latent(
        lat, i.get("model"), i.get("positive"), seed, f"{sampler} {steps} steps cfg {i['cfg']}"
    )
    return NodeResult((out, out))  # (output, denoised_output)


def _sampler_custom_advanced(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    lat: Latent = i["latent_image"]
    noise = i.get("noise")
    guider = i.get("guider")
    seed = noise.seed if isinstance(noise, Noise) else None
    model = guider.model if isinstance(guider, Guider) else None
    positive = guider.positive if isinstance(guider, Guider) else None
    sig = i.get("sigmas")
    steps = sig.steps if isinstance(sig, Sigmas) else "?"
    sampler = getattr(i.get("sampler"), "name", "?")
    out = sample_latent(lat, model, positive, seed, f"{sampler} {steps} steps")
    return NodeResult((out, out))


def _sampler_select(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((ModelRef("SAMPLER", str(i.get("sampler_name", ctx.class_type))),))


SAMPLING_IMPLEMENTATIONS: dict[str, Impl] = {
    "BasicScheduler": _scheduler,
    "KarrasScheduler": _scheduler,
    "ExponentialScheduler": _scheduler,
    "PolyexponentialScheduler": _scheduler,
    "LaplaceScheduler": _scheduler,
    "BetaSamplingScheduler": _scheduler,
    "SDTurboScheduler": _scheduler,
    "AlignYourStepsScheduler": _scheduler,
    "GITSScheduler": _scheduler,
    "SplitSigmas": _split_sigmas,
    "RandomNoise": _random_noise,
    "DisableNoise": _disable_noise,
    "CFGGuider": _cfg_guider,
    "BasicGuider": _cfg_guider,
    "KSamplerSelect": _sampler_select,
    "SamplerCustom": _sampler_custom,
    "SamplerCustomAdvanced": _sampler_custom_advanced,
}
