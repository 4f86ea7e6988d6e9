"""The Data Contract v1 as pydantic models: what ``project.json`` and ``storyboard.json`` hold.

The models check the raw JSON on load; StoryCore keeps and writes back the raw JSON, so keys the
models do not know are preserved (``extra="allow"``). Those keys are reported as warnings by
:mod:`storycore._storyboard_check`, except extensions: keys starting with ``x_`` or ``x-`` (and a
shot's free-form ``notes``), which are the user's own.

The field descriptions are what ``storycore schema storyboard|project`` shows in an editor.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "EXTENSION_PREFIXES",
    "JSON_SCHEMA_DIALECT",
    "SAFE_ID",
    "CoherenceAnchors",
    "ControlRef",
    "LoraRef",
    "ProjectConfig",
    "ProjectFileModel",
    "PromptModules",
    "References",
    "Shot",
    "Storyboard",
    "Technical",
    "project_schema",
    "storyboard_schema",
]

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
RATIO = r"^\d+(\.\d+)?:\d+(\.\d+)?$"
RESOLUTION = r"^\d{2,5}x\d{2,5}$"
MAX_SEED = 2**63 - 1
EXTENSION_PREFIXES = ("x_", "x-")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# In the JSON Schema an object takes only the keys StoryCore knows, plus extensions (x_..., x-...),
# so an editor marks a typo the way `storycore validate` warns about it.
_SCHEMA_EXTRA: dict[str, Any] = {
    "additionalProperties": False,
    "patternProperties": {"^x[-_]": {"description": "An extension of your own: kept, not read."}},
}

_SCHEMA_FIELD = Field(
    default=None,
    alias="$schema",
    description="The JSON Schema this file follows, for editors (for example the file written "
    "by `storycore schema storyboard > storyboard.schema.json`). StoryCore does not read it.",
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_SCHEMA_EXTRA)


class Technical(_Open):
    """Sampler settings for this shot. Each one set here wins over the `[render]` default."""

    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="The shot's seed. null: derived from config.global_seed and the shot id "
        "(the same on every machine).",
    )
    aspect_ratio: str | None = Field(
        default=None,
        pattern=RATIO,
        description="Frame shape such as `16:9`, used when `resolution` is not given.",
    )
    resolution: str | None = Field(
        default=None,
        pattern=RESOLUTION,
        description="Target size WIDTHxHEIGHT such as `1920x1080`. The render keeps its shape "
        "with the long side at `[render] render_long_side` (1920x1080 renders at 768x432).",
    )
    cfg_scale: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Prompt guidance (CFG), 0 to 100; default `[render] cfg`.",
    )
    steps: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Sampling steps, 1 to 1000; default `[render] steps`.",
    )
    negative_prompt: str | None = Field(
        default=None,
        description="What to keep out of the image; default `[render] negative_prompt`.",
    )
    sampler: str | None = Field(
        default=None,
        description="ComfyUI sampler name such as `euler`; default `[render] sampler`.",
    )
    scheduler: str | None = Field(
        default=None,
        description="ComfyUI scheduler name such as `karras`; default `[render] scheduler`.",
    )
    checkpoint: str | None = Field(
        default=None,
        description="Checkpoint file in ComfyUI's models/checkpoints; "
        "default `[render] checkpoint`.",
    )
    denoise: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Denoise, above 0 and at most 1. Default 1 (text to image), or "
        "`[render] img2img_denoise` with an init image.",
    )


class PromptModules(_Open):
    """The positive prompt, in parts: subject, camera, lighting, color, style (joined in this
    order, followed by the project's coherence anchors)."""

    subject: str = Field(default="", description="Who or what is in the frame.")
    camera: str = Field(default="", description="Framing, angle and movement.")
    lighting: str = Field(default="", description="Light sources and mood.")
    color: str = Field(default="", description="Palette and grading.")
    style: str = Field(default="", description="Rendering style.")
    technical: Technical = Field(default_factory=Technical, description=Technical.__doc__)


class ControlRef(_Open):
    """A ControlNet guide image; the ControlNet model is `[controlnet.models]` for its kind."""

    kind: Literal["pose", "depth", "lineart", "canny"] = Field(
        description="What the image guides: `pose`, `depth`, `lineart` or `canny`."
    )
    path: str = Field(min_length=1, description="The guide image, relative to the project folder.")
    strength: float | None = Field(
        default=None, ge=0, le=2, description="0 to 2; default `[controlnet] strength`."
    )
    start_percent: float | None = Field(
        default=None, ge=0, le=1, description="When guidance starts, 0 to 1."
    )
    end_percent: float | None = Field(
        default=None, ge=0, le=1, description="When guidance ends, 0 to 1."
    )
    preprocess: bool = Field(
        default=False,
        description="true: the image is a picture to turn into a pose/depth/lineart/canny map "
        "first (needs comfyui_controlnet_aux); false: it already is such a map.",
    )


class LoraRef(_Open):
    """A LoRA applied to the model and the text encoder."""

    name: str = Field(min_length=1, description="LoRA file in ComfyUI's models/loras.")
    strength_model: float = Field(default=1.0, ge=-10, le=10, description="-10 to 10.")
    strength_clip: float = Field(default=1.0, ge=-10, le=10, description="-10 to 10.")


class References(_Open):
    """Images and models that guide this shot."""

    characters: list[str] = Field(
        default_factory=list,
        description="Character reference images (IP-Adapter), relative to the project folder.",
    )
    controls: list[ControlRef] = Field(default_factory=list, description=ControlRef.__doc__)
    init_image: str | None = Field(
        default=None,
        description="Start from this image (image to image), relative to the project folder.",
    )
    loras: list[LoraRef] = Field(default_factory=list, description=LoraRef.__doc__)


class Shot(_Open):
    """One storyboard shot: one panel, one image."""

    shot_id: str = Field(
        pattern=SAFE_ID,
        description="Unique id: letters, digits, `_ . -`, at most 128 characters. Names the "
        "shot's files.",
    )
    scene_id: str | None = Field(default=None, description="The scene it belongs to.")
    shot_number: int = Field(default=0, ge=0, description="Its number, for people.")
    version: str | int = Field(
        default="v1", description="`v1`, `v2`... A new version renders anew."
    )
    title: str = Field(default="", description="Short title, shown on the storyboard page.")
    description: str = Field(
        default="", description="What happens; the prompt's subject when `subject` is empty."
    )
    duration_seconds: float | None = Field(default=None, ge=0, description="Planned length.")
    prompt_modules: PromptModules = Field(
        default_factory=PromptModules, description=PromptModules.__doc__
    )
    references: References = Field(default_factory=References, description=References.__doc__)
    template: str | None = Field(
        default=None,
        description="A user workflow from `[templates]` to render this shot with; "
        "default `[render] template`, else the built-in graph.",
    )
    notes: Any = Field(
        default=None,
        description="Anything for people (text or an object); kept, never read by StoryCore.",
    )


class Storyboard(_Open):
    """StoryCore storyboard (storyboard.json): the shots to render, in order."""

    schema_uri: str | None = _SCHEMA_FIELD
    storyboard_id: str | None = Field(default=None, description="This storyboard's id.")
    project_id: str | None = Field(
        default=None, description="Must match project.json's project_id when given."
    )
    shots: list[Shot] = Field(description="One entry per shot, in storyboard order.")


class ProjectConfig(_Open):
    """Project-wide values."""

    global_seed: int = Field(
        ge=0, le=MAX_SEED, description="Seeds of shots without their own derive from this."
    )
    target_aspect_ratio: str | None = Field(
        default=None, pattern=RATIO, description="Frame shape for shots that give none."
    )
    target_resolution: str | None = Field(
        default=None, pattern=RESOLUTION, description="Target size for shots that give none."
    )
    target_duration_seconds: float | None = Field(
        default=None, ge=0, description="Planned running time."
    )
    hackathon_mode: bool | None = Field(
        default=None, description="Data Contract flag of other tools; StoryCore does not read it."
    )


class CoherenceAnchors(_Open):
    """What every shot shares; the text anchors are added to every positive prompt."""

    style_anchor_id: str | None = Field(default=None, description="Id of the style reference.")
    palette_id: str | None = Field(default=None, description="Id of the palette.")
    character_sheet_ids: list[str] = Field(
        default_factory=list, description="Ids of the character sheets."
    )
    lighting_direction: str | None = Field(default=None, description="Adds 'light from the ...'.")
    lighting_temperature: str | None = Field(default=None, description="Adds '... light'.")
    perspective_type: str | None = Field(default=None, description="Adds '... perspective'.")
    horizon_line: str | None = Field(default=None, description="Adds '... horizon line'.")
    style_prompt: str | None = Field(default=None, description="Added as it is.")
    palette_prompt: str | None = Field(default=None, description="Added as it is.")


def _json_object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("should be an object ({...})")
    return value


def _manifest(value: Any) -> Any:
    images = _json_object(value).get("generated_images")
    if images is not None and not isinstance(images, list):
        raise ValueError("`generated_images` should be a list of records ([...])")
    return value


# Checked to be a JSON object but not copied: the index and the manifest of a long board hold
# thousands of entries, and pydantic would rebuild each dict on every validation.
_JsonObject = Annotated[Any, AfterValidator(_json_object), WithJsonSchema({"type": "object"})]
_Manifest = Annotated[Any, AfterValidator(_manifest), WithJsonSchema({"type": "object"})]


class ProjectFileModel(_Open):
    """StoryCore project (project.json, Data Contract v1)."""

    schema_uri: str | None = _SCHEMA_FIELD
    schema_version: str = Field(description="Data Contract version, `1.0`.")
    project_id: str = Field(min_length=1, description="The project's id.")
    created_at: str | None = Field(default=None, description="ISO 8601 time.")
    updated_at: str | None = Field(default=None, description="ISO 8601 time; set on every save.")
    config: ProjectConfig = Field(description=ProjectConfig.__doc__)
    coherence_anchors: CoherenceAnchors = Field(
        default_factory=CoherenceAnchors, description=CoherenceAnchors.__doc__
    )
    characters: dict[str, Any] = Field(
        default_factory=dict, description="Character sheets by id; kept, not read by StoryCore."
    )
    shots_index: _JsonObject = Field(
        default_factory=dict, description="Per shot: active version, active render, status."
    )
    asset_manifest: _Manifest = Field(
        default_factory=dict, description="Every render's record (written by StoryCore)."
    )
    status: dict[str, Any] = Field(default_factory=dict, description="Pipeline status.")
    capabilities: dict[str, Any] | None = Field(default=None, description="Tool capabilities.")
    generation_status: dict[str, Any] | None = Field(
        default=None, description="Per stage status, such as `image_generation`."
    )


def _schema(model: type[BaseModel], file_name: str) -> dict[str, Any]:
    body = model.model_json_schema(by_alias=True)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"StoryCore {file_name}",
        **{key: value for key, value in body.items() if key != "title"},
    }


def storyboard_schema() -> dict[str, Any]:
    """The JSON Schema of ``storyboard.json``."""
    return _schema(Storyboard, "storyboard.json")


def project_schema() -> dict[str, Any]:
    """The JSON Schema of ``project.json``."""
    return _schema(ProjectFileModel, "project.json")
