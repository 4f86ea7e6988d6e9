"""Render panels: what one storyboard shot needs to become one image.

A :class:`Panel` is the resolved, render-ready form of a shot: composed prompts, size, seed,
sampler settings, models, and the reference images it uses (paths already resolved against the
project folder). :func:`panels_from_project` builds them from a loaded project and the settings.
Pure, but for one check: a reference image must really lie (links followed) inside the project
folder or a folder the user allowed (``trust.reference_folders``); a project may come from
anyone, and what it names is uploaded to the server. That costs a few ``lstat`` calls per image,
so callers in ``async`` code run it in a worker thread.

Seeds are deterministic across runs, processes and machines: a stable hash (sha256), never
Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from storycore._text import without_surrogates

if TYPE_CHECKING:
    from storycore._profiles import ProfileSettings
    from storycore.config import ResolvedSettings, Settings
    from storycore.project import Project, Shot

__all__ = [
    "ControlImage",
    "ControlKind",
    "LoraSpec",
    "Panel",
    "SourceKind",
    "ValueSource",
    "compose_prompt",
    "derive_shot_seed",
    "panel_from_shot",
    "panel_key",
    "panel_sources",
    "panels_from_project",
    "render_size",
    "round_to_multiple",
    "split_key",
    "take_seed",
]

ControlKind = Literal["pose", "depth", "lineart", "canny"]
CONTROL_KINDS: tuple[ControlKind, ...] = ("pose", "depth", "lineart", "canny")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class ControlImage:
    """A ControlNet guide image for a panel. ``None`` values take the settings' defaults."""

    kind: ControlKind
    path: Path
    strength: float | None = None
    start_percent: float | None = None
    end_percent: float | None = None
    preprocess: bool = False


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA applied to the model and CLIP."""

    name: str
    strength_model: float = 1.0
    strength_clip: float = 1.0


@dataclass(frozen=True)
class Panel:
    """One shot, resolved and ready to turn into a ComfyUI graph."""

    project_id: str
    shot_id: str
    shot_number: int
    version: int
    title: str
    positive: str
    negative: str
    width: int
    height: int
    seed: int
    seed_source: Literal["shot", "derived", "global"]
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    checkpoint: str
    denoise: float = 1.0
    vae: str | None = None
    loras: tuple[LoraSpec, ...] = ()
    init_image: Path | None = None
    references: tuple[Path, ...] = ()
    controls: tuple[ControlImage, ...] = ()
    template: str | None = None
    target_width: int | None = None
    target_height: int | None = None
    description: str = ""
    camera: str = ""
    lighting: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    take: int = 1
    profile: str | None = None

    @property
    def key(self) -> str:
        """What names this panel in a run: the shot id for its first take, ``SHOT#N`` for take
        N (a ``#`` is never in a shot id)."""
        return panel_key(self.shot_id, self.take)


def panel_key(shot_id: str, take: int) -> str:
    """``shot_id`` for take 1, ``shot_id#take`` for the others."""
    return shot_id if take == 1 else f"{shot_id}#{take}"


def split_key(key: str) -> tuple[str, int]:
    """``("S01", 3)`` for ``"S01#3"``, ``("S01", 1)`` for ``"S01"``."""
    shot_id, sep, take = key.rpartition("#")
    if sep and take.isascii() and take.isdigit() and shot_id:
        return shot_id, int(take)
    return key, 1


def take_seed(seed: int, take: int) -> int:
    """The seed of take ``take`` of a panel whose first take has ``seed``: ``seed + take - 1``,
    wrapping at :data:`MAX_SEED` (so every take is a different, reproducible image)."""
    return (seed + take - 1) % (MAX_SEED + 1)


def round_to_multiple(value: float, multiple: int = 8) -> int:
    """Round ``value`` to the nearest positive multiple of ``multiple``."""
    return max(multiple, round(value / multiple) * multiple)


def derive_shot_seed(global_seed: int, shot_id: str) -> int:
    """A per-shot seed from the project seed and the shot id, identical on every machine."""
    digest = hashlib.sha256(f"{global_seed}:{shot_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)


_ANCHOR_PHRASES = {
    "lighting_direction": "light from the {}",
    "lighting_temperature": "{} light",
    "perspective_type": "{} perspective",
    "horizon_line": "{} horizon line",
    "style_prompt": "{}",
    "palette_prompt": "{}",
}


def compose_prompt(shot: Shot, anchors: dict[str, object]) -> str:
    """The positive prompt: subject, camera, lighting, color, style, then the coherence anchors."""
    modules = shot.prompt_modules
    parts = [modules.subject, modules.camera, modules.lighting, modules.color, modules.style]
    if not modules.subject.strip():
        parts.insert(0, shot.description or shot.title)
    for key, template in _ANCHOR_PHRASES.items():
        value = anchors.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(template.format(value.strip()))
    seen: set[str] = set()
    unique = []
    for part in (p.strip().rstrip(",") for p in parts):
        if part and part.lower() not in seen:
            seen.add(part.lower())
            unique.append(part)
    return ", ".join(unique)


def _parse_pair(text: str | None, sep: str) -> tuple[float, float] | None:
    if not text:
        return None
    left, _, right = text.partition(sep)
    try:
        a, b = float(left), float(right)
    except ValueError:
        return None
    return (a, b) if a > 0 and b > 0 else None


def render_size(
    resolution: str | None, aspect_ratio: str | None, long_side: int, multiple: int = 8
) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Render size and target size for a shot.

    The target is the shot's resolution (or the aspect ratio at ``long_side``). The render size
    keeps the target's aspect ratio with its long side at most ``long_side``, each side rounded to
    ``multiple``, so a 1920x1080 target renders at a model-friendly 768x432.
    """
    target = _parse_pair(resolution, "x")
    ratio = _parse_pair(aspect_ratio, ":")
    if target is None:
        w_ratio, h_ratio = ratio or (1.0, 1.0)
        scale = long_side / max(w_ratio, h_ratio)
        width, height = w_ratio * scale, h_ratio * scale
        target_size = None
    else:
        width, height = target
        target_size = (int(width), int(height))
        scale = min(1.0, long_side / max(width, height))
        width, height = width * scale, height * scale
    return (round_to_multiple(width, multiple), round_to_multiple(height, multiple)), target_size


def _seed_for(shot: Shot, global_seed: int, policy: str) -> tuple[int, str]:
    explicit = shot.prompt_modules.technical.seed
    if policy == "global":
        return global_seed % (MAX_SEED + 1), "global"
    if policy == "shot" and explicit is not None:
        return int(explicit), "shot"
    return derive_shot_seed(global_seed, shot.shot_id), "derived"


def _resolve(root: Path, relative: str, allowed: Sequence[Path], shot_id: str, field: str) -> Path:
    """``relative`` against the project folder, refused when it really lies outside it and the
    user's reference folders (``../..``, an absolute path, a link in the project that leads
    out)."""
    from storycore._project_trust import REFERENCE_HINT, outside_reach, outside_words

    path = Path(relative)
    resolved = path if path.is_absolute() else root / path
    leads = outside_reach(root, resolved, allowed)
    if leads is not None:
        from storycore.errors import OutsideProjectError

        raise OutsideProjectError(
            outside_words("reference image", relative, root, leads),
            where=f"{root / 'storyboard.json'}: shot {shot_id}, references.{field}",
            hint=REFERENCE_HINT,
        )
    return resolved


def panel_from_shot(
    project: Project,
    shot: Shot,
    settings: Settings,
    profile: tuple[str, ProfileSettings] | None = None,
) -> Panel:
    """Resolve one shot into a :class:`Panel` with the settings' defaults filled in; a
    ``profile`` (name, values) overrides the shot's own values where it sets one."""
    from storycore.project import parse_version

    render = settings.render
    tech = shot.prompt_modules.technical
    name, wins = profile if profile is not None else (None, None)
    config = project.data.get("config", {})
    # The shot's own size (its resolution, else its aspect ratio) wins over the project's.
    own_size = bool(tech.resolution or tech.aspect_ratio)
    (width, height), target = render_size(
        tech.resolution if own_size else config.get("target_resolution"),
        tech.aspect_ratio if own_size else config.get("target_aspect_ratio"),
        wins.render_long_side if wins and wins.render_long_side else render.render_long_side,
        render.size_multiple,
    )
    seed, source = _seed_for(shot, project.global_seed, render.seed_policy)
    refs = shot.references
    negative = tech.negative_prompt if tech.negative_prompt is not None else render.negative_prompt
    allowed, root, shot_id = settings.trust.reference_folders, project.root, shot.shot_id
    init_image = (
        _resolve(root, refs.init_image, allowed, shot_id, "init_image") if refs.init_image else None
    )
    denoise = (
        tech.denoise
        if tech.denoise is not None
        else (render.img2img_denoise if init_image is not None else 1.0)
    )
    panel = Panel(
        project_id=project.project_id,
        shot_id=shot.shot_id,
        shot_number=shot.shot_number,
        version=parse_version(shot.version),
        title=shot.title,
        # A lone surrogate in a received storyboard would fail the server's PNG writer.
        positive=without_surrogates(compose_prompt(shot, project.coherence_anchors)),
        negative=without_surrogates(negative),
        width=width,
        height=height,
        seed=seed,
        seed_source=cast(Literal["shot", "derived", "global"], source),
        steps=tech.steps or render.steps,
        cfg=tech.cfg_scale if tech.cfg_scale is not None else render.cfg,
        sampler=tech.sampler or render.sampler,
        scheduler=tech.scheduler or render.scheduler,
        checkpoint=tech.checkpoint or render.checkpoint,
        denoise=denoise,
        vae=render.vae,
        loras=tuple(
            LoraSpec(lora.name, lora.strength_model, lora.strength_clip) for lora in refs.loras
        ),
        init_image=init_image,
        references=tuple(
            _resolve(root, ref, allowed, shot_id, f"characters[{i}]")
            for i, ref in enumerate(refs.characters)
        ),
        controls=tuple(
            ControlImage(
                kind=c.kind,
                path=_resolve(root, c.path, allowed, shot_id, f"controls[{i}].path"),
                strength=c.strength,
                start_percent=c.start_percent,
                end_percent=c.end_percent,
                preprocess=c.preprocess,
            )
            for i, c in enumerate(refs.controls)
        ),
        template=shot.template or render.template,
        target_width=target[0] if target else None,
        target_height=target[1] if target else None,
        description=shot.description,
        camera=shot.prompt_modules.camera,
        lighting=shot.prompt_modules.lighting,
        profile=name,
    )
    if wins is None:
        return panel
    return replace(
        panel,
        steps=wins.steps or panel.steps,
        cfg=wins.cfg if wins.cfg is not None else panel.cfg,
        sampler=wins.sampler or panel.sampler,
        scheduler=wins.scheduler or panel.scheduler,
        checkpoint=wins.checkpoint or panel.checkpoint,
        template=wins.template or panel.template,
    )


def panels_from_project(
    project: Project,
    settings: Settings,
    shot_ids: list[str] | None = None,
    profile: tuple[str, ProfileSettings] | None = None,
) -> list[Panel]:
    """Every selected shot as a panel, in storyboard order (with ``profile``'s values, when
    given). Unknown ids raise ProjectError."""
    if shot_ids:
        wanted = [project.shot(shot_id) for shot_id in shot_ids]
        order = {shot.shot_id: i for i, shot in enumerate(project.shots)}
        shots = sorted({s.shot_id: s for s in wanted}.values(), key=lambda s: order[s.shot_id])
    else:
        shots = project.shots
    return [panel_from_shot(project, shot, settings, profile) for shot in shots]


SourceKind = Literal["shot", "project default", "built-in default"]


@dataclass(frozen=True)
class ValueSource:
    """One of a panel's values and where it came from: the shot itself, a project default (a
    setting from ``storycore.toml``, the user config or the environment) or StoryCore's own
    default. ``detail`` names the field or the setting and its file."""

    value: object
    source: SourceKind
    detail: str


def _from_setting(resolved: ResolvedSettings, dotted: str, value: object) -> ValueSource:
    origin = resolved.source_of(dotted)
    if origin == "default":
        return ValueSource(value, "built-in default", dotted)
    return ValueSource(value, "project default", f"{dotted} from {origin}")


def _shot_or_setting(
    given: bool, field_name: str, dotted: str, value: object, resolved: ResolvedSettings
) -> ValueSource:
    if given:
        return ValueSource(value, "shot", f"prompt_modules.technical.{field_name}")
    return _from_setting(resolved, dotted, value)


def panel_sources(
    project: Project, shot: Shot, panel: Panel, resolved: ResolvedSettings
) -> dict[str, ValueSource]:
    """Where each of ``panel``'s render values came from (for ``storycore validate``).

    Kept apart from :func:`panel_from_shot`, which is on the render's hot path; it follows the
    same rules: a value the shot gives wins, then the ``[render]`` setting, then the built-in
    default."""
    tech = shot.prompt_modules.technical
    config = project.data.get("config", {})
    long_side = resolved.source_of("render.render_long_side")
    at = f"render.render_long_side = {resolved.settings.render.render_long_side}"
    at += "" if long_side == "default" else f" from {long_side}"
    size_value = f"{panel.width}x{panel.height}"
    if tech.resolution or tech.aspect_ratio:
        field_name = "resolution" if tech.resolution else "aspect_ratio"
        size = ValueSource(size_value, "shot", f"prompt_modules.technical.{field_name}, {at}")
    elif config.get("target_resolution") or config.get("target_aspect_ratio"):
        field_name = (
            "target_resolution" if config.get("target_resolution") else "target_aspect_ratio"
        )
        size = ValueSource(size_value, "project default", f"project.json config.{field_name}, {at}")
    else:
        size = ValueSource(size_value, "built-in default", f"square, {at}")
    policy = resolved.source_of("render.seed_policy")
    policy_text = f"render.seed_policy = {resolved.settings.render.seed_policy}"
    if panel.seed_source == "shot":
        seed = ValueSource(panel.seed, "shot", "prompt_modules.technical.seed")
    else:
        what = (
            "config.global_seed"
            if panel.seed_source == "global"
            else ("derived from config.global_seed and the shot id")
        )
        if policy == "default":
            seed = ValueSource(panel.seed, "built-in default", f"{what} ({policy_text})")
        else:
            seed = ValueSource(
                panel.seed, "project default", f"{what} ({policy_text} from {policy})"
            )
    if tech.denoise is not None:
        denoise = ValueSource(panel.denoise, "shot", "prompt_modules.technical.denoise")
    elif panel.init_image is not None:
        denoise = _from_setting(resolved, "render.img2img_denoise", panel.denoise)
    else:
        denoise = ValueSource(panel.denoise, "built-in default", "text to image")
    if shot.template:
        template = ValueSource(panel.template, "shot", "template")
    else:
        template = _from_setting(resolved, "render.template", panel.template)
    return {
        "size": size,
        "seed": seed,
        "steps": _shot_or_setting(bool(tech.steps), "steps", "render.steps", panel.steps, resolved),
        "cfg": _shot_or_setting(
            tech.cfg_scale is not None, "cfg_scale", "render.cfg", panel.cfg, resolved
        ),
        "sampler": _shot_or_setting(
            bool(tech.sampler), "sampler", "render.sampler", panel.sampler, resolved
        ),
        "scheduler": _shot_or_setting(
            bool(tech.scheduler), "scheduler", "render.scheduler", panel.scheduler, resolved
        ),
        "checkpoint": _shot_or_setting(
            bool(tech.checkpoint), "checkpoint", "render.checkpoint", panel.checkpoint, resolved
        ),
        "negative_prompt": _shot_or_setting(
            tech.negative_prompt is not None,
            "negative_prompt",
            "render.negative_prompt",
            panel.negative,
            resolved,
        ),
        "denoise": denoise,
        "template": template,
    }
