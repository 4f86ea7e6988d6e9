"""A sampler's inputs, wherever they are (pure): the values a panel sets and the conditioning,
latent and model it takes. KSampler and KSamplerAdvanced hold their values; SamplerCustom and
SamplerCustomAdvanced take them from the nodes they link (RandomNoise ``noise_seed``,
KSamplerSelect ``sampler_name``, BasicScheduler ``scheduler``/``steps``/``denoise``, CFGGuider
``cfg``/``positive``/``negative``, BasicGuider ``conditioning``, DualCFGGuider ``cond1``/
``cfg_conds``): ComfyUI ``nodes.py`` @ 5aabaf51, ``comfy_extras/nodes_custom_sampler.py`` @
be91880b.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storycore.workflows._infer_graph import GraphView

__all__ = ["SAMPLERS", "Setup", "is_sampler", "sampler_setup"]

SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_SEED_INPUTS = ("seed", "noise_seed")


@dataclass
class Setup:
    """Where one sampler takes each value and its conditioning from."""

    sampler: str
    values: dict[str, tuple[str, str]] = field(default_factory=dict)
    positive: list[tuple[str, str]] = field(default_factory=list)
    negative: list[tuple[str, str]] = field(default_factory=list)
    no_negative: str | None = None
    latent: tuple[str, str] | None = None
    model: tuple[str, str] | None = None


def is_sampler(view: GraphView, node_id: str) -> bool:
    """A sampling node: a known sampler class, or one taking a latent and conditioning."""
    if view.class_of(node_id) in SAMPLERS:
        return True
    return view.has_input(node_id, "latent_image") and (
        view.has_input(node_id, "positive") or view.has_input(node_id, "guider")
    )


def sampler_setup(view: GraphView, sampler: str) -> Setup:
    """Where ``sampler`` takes its values and conditioning from, through the nodes it links
    (RandomNoise, KSamplerSelect, BasicScheduler, a guider)."""
    found = Setup(sampler)
    cls = view.class_of(sampler)
    _take_values(view, found, sampler)
    found.latent = (sampler, "latent_image")
    if view.has_input(sampler, "model"):
        found.model = (sampler, "model")
    if cls != "SamplerCustomAdvanced":
        found.positive.append((sampler, "positive"))
        found.negative.append((sampler, "negative"))
    for link in ("noise", "sampler", "sigmas", "guider"):  # SamplerCustom(Advanced)
        origin = view.source(sampler, link)
        if origin is not None:
            _take_values(view, found, origin[0])
    guider = view.source(sampler, "guider")
    if guider is not None:
        g = guider[0]
        found.model = (g, "model") if view.has_input(g, "model") else found.model
        for name in ("positive", "conditioning", "cond1"):
            if view.has_input(g, name):
                found.positive.append((g, name))
                break
        if view.has_input(g, "negative"):
            found.negative.append((g, "negative"))
        else:
            found.no_negative = (
                f"no negative prompt: {view.label(g)} takes one conditioning (Flux-style)"
            )
    return found


def _take_values(view: GraphView, found: Setup, node_id: str) -> None:
    """Record the value inputs of ``node_id`` not found on an earlier node."""
    names = {
        "seed": _SEED_INPUTS,
        "steps": ("steps",),
        "cfg": ("cfg", "cfg_conds"),
        "sampler": ("sampler_name",),
        "scheduler": ("scheduler",),
        "denoise": ("denoise",),
    }
    for value, inputs in names.items():
        for name in inputs:
            if value not in found.values and view.has_input(node_id, name):
                found.values[value] = (node_id, name)
