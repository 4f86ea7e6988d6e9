"""Typed node definitions parsed from a ComfyUI ``/object_info`` body (pure).

``/object_info`` describes each class: inputs (``required`` / ``optional`` / ``hidden``), each as
``[TYPE, {opts}]``. A combo input comes in two shapes: ``[[choice, ...], {opts}]`` and
``["COMBO", {"options": [...], ...}]``; both become an :class:`InputSpec` of kind ``"COMBO"`` with
its ``choices``.

Flags a class may carry (ComfyUI server.py @ 5e14d797 ``node_info``; V3 nodes through
comfy_api/latest/_io.py NodeInfoV1): ``deprecated``, ``experimental``, ``dev_only`` (each only
``true`` when set), ``api_node`` (a node that calls a paid online API: V3 nodes always say
``true`` or ``false``), ``search_aliases``. Only a JSON ``true`` counts; at most 32 aliases.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from storycore.errors import WorkflowError

__all__ = [
    "MODEL_INPUT_FOLDERS",
    "WIDGET_TYPES",
    "InputSpec",
    "NodeCatalog",
    "NodeDef",
    "model_folder_for",
]

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})

# Inputs whose choices are the files of a model folder (GET /models/{folder}).
MODEL_INPUT_FOLDERS: Mapping[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "ipadapter_file": "ipadapter",
    "unet_name": "diffusion_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
}
_CLASS_INPUT_FOLDERS: Mapping[tuple[str, str], str] = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
}


def model_folder_for(class_type: str, input_name: str) -> str | None:
    """The model folder whose files a combo input lists, or None if it is not a model input."""
    folder = _CLASS_INPUT_FOLDERS.get((class_type, input_name))
    if folder is None and class_type.startswith(("DepthAnything", "MiDaS", "Zoe")):
        return None  # preprocessor checkpoints live in the pack's own folder
    return folder or MODEL_INPUT_FOLDERS.get(input_name)


@dataclass(frozen=True)
class InputSpec:
    """One input of a node class."""

    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO, or a link type such as IMAGE / MODEL / *
    section: str  # required, optional or hidden
    choices: tuple[Any, ...] | None = None
    default: Any = None
    min: float | None = None
    max: float | None = None
    image_upload: bool = False
    multiselect: bool = False
    force_input: bool = False
    control_after_generate: bool = False

    @property
    def required(self) -> bool:
        return self.section == "required"

    @property
    def is_widget(self) -> bool:
        """True when the input takes a value (a widget in the UI), not only a link."""
        return self.type in WIDGET_TYPES and not self.force_input


@dataclass(frozen=True)
class NodeDef:
    """One node class from ``/object_info``."""

    name: str
    inputs: Mapping[str, InputSpec]
    input_order: tuple[str, ...]
    outputs: tuple[str, ...]
    output_names: tuple[str, ...]
    output_node: bool
    display_name: str
    category: str
    python_module: str
    deprecated: bool = False
    experimental: bool = False
    dev_only: bool = False
    api_node: bool = False  # calls a paid online API (comfy_api_nodes)
    search_aliases: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def required_inputs(self) -> list[InputSpec]:
        return [spec for spec in self.inputs.values() if spec.required]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def parse_input(name: str, section: str, spec: Any, where: str) -> InputSpec:
    """Parse one ``[TYPE, {opts}]`` entry (either combo shape)."""
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list | tuple) or not spec:
        raise WorkflowError(
            f"input {name!r} has an unreadable spec {spec!r}",
            where=where,
            hint="refresh the server's /object_info; the cached copy may be damaged",
        )
    head = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices: tuple[Any, ...] | None = None
    if isinstance(head, list | tuple):
        kind = "COMBO"
        choices = tuple(head)
    elif head == "COMBO":
        kind = "COMBO"
        choices = tuple(opts.get("options") or ())
    elif isinstance(head, str):
        kind = head
    else:
        raise WorkflowError(
            f"input {name!r} has a type of unexpected shape {head!r}",
            where=where,
            hint="refresh the server's /object_info",
        )
    return InputSpec(
        name=name,
        type=kind,
        section=section,
        choices=choices,
        default=opts.get("default"),
        min=_number(opts.get("min")),
        max=_number(opts.get("max")),
        image_upload=bool(opts.get("image_upload")),
        multiselect=bool(opts.get("multiselect")),
        force_input=bool(opts.get("forceInput")),
        control_after_generate=bool(opts.get("control_after_generate")),
    )


def parse_node(name: str, body: Mapping[str, Any]) -> NodeDef:
    where = f"/object_info {name}"
    if not isinstance(body, Mapping):
        raise WorkflowError(
            "class entry is not an object", where=where, hint="refresh /object_info"
        )
    raw_inputs = body.get("input") or {}
    inputs: dict[str, InputSpec] = {}
    for section in ("required", "optional", "hidden"):
        entries = raw_inputs.get(section) or {}
        if not isinstance(entries, Mapping):
            continue
        for input_name, spec in entries.items():
            if section == "hidden":
                inputs[input_name] = InputSpec(input_name, str(spec), "hidden")
            else:
                inputs[input_name] = parse_input(input_name, section, spec, where)
    order: list[str] = []
    raw_order = body.get("input_order") or {}
    for section in ("required", "optional"):
        order.extend(n for n in raw_order.get(section, ()) if n in inputs and n not in order)
    order.extend(n for n, s in inputs.items() if s.section != "hidden" and n not in order)
    outputs = tuple(str(t) if not isinstance(t, list) else "COMBO" for t in body.get("output", ()))
    names = tuple(str(n) for n in body.get("output_name", ()) or outputs)
    aliases = body.get("search_aliases")
    aliases = aliases[:32] if isinstance(aliases, list) else []
    return NodeDef(
        name=name,
        inputs=inputs,
        input_order=tuple(order),
        outputs=outputs,
        output_names=names,
        output_node=bool(body.get("output_node")),
        display_name=str(body.get("display_name") or name),
        category=str(body.get("category") or ""),
        python_module=str(body.get("python_module") or ""),
        deprecated=body.get("deprecated") is True,
        experimental=body.get("experimental") is True,
        dev_only=body.get("dev_only") is True,
        api_node=body.get("api_node") is True,
        search_aliases=tuple(str(a)[:100] for a in aliases if isinstance(a, str)),
        raw=body,
    )


class NodeCatalog(Mapping[str, NodeDef]):
    """Every node class a server offers, parsed lazily from its ``/object_info`` dicts."""

    def __init__(self, *object_infos: Mapping[str, Any]) -> None:
        self._raw: dict[str, Mapping[str, Any]] = {}
        for info in object_infos:
            self._raw.update(info)
        self._parsed: dict[str, NodeDef] = {}

    @classmethod
    def coerce(cls, info: NodeCatalog | Mapping[str, Any]) -> NodeCatalog:
        return info if isinstance(info, NodeCatalog) else cls(info)

    def __getitem__(self, name: str) -> NodeDef:
        found = self._parsed.get(name)
        if found is None:
            found = parse_node(name, self._raw[name])
            self._parsed[name] = found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw
