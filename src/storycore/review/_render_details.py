"""What a render was made with, read back from its image, and what the storyboard asks for now.

The manifest record holds the seed, the checkpoint, a flat list of model names and the
timings, but not the prompts or the sampler settings. Those travel in the image itself:

- ComfyUI's ``SaveImage`` writes the API graph it ran as a ``prompt`` text chunk (and each
  ``extra_pnginfo`` key as another), unless the server runs with ``--disable-metadata``
  (Comfy-Org/ComfyUI ``nodes.py``, ``SaveImage.save_images``, commit 02217e36a45b; the
  recordings' README says the same of ComfyUI 0.3.64);
- StoryCore splices its provenance (``positive``, ``negative``, seed, checkpoint, template)
  into a ``storycore`` text chunk before the image data (``engine/_outputs.py``).

:func:`read_png_texts` reads only those two chunks, from the chunks before the first ``IDAT``
(Pillow writes text chunks there), seeking past everything else: the pixels are never read.
:func:`render_details` turns them into a :class:`RenderDetails`. :func:`planned` gives what
the storyboard asks for today, so the page can say where the two differ.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from storycore._statefiles import open_plain_for_reading
from storycore._text import node_sort_key

__all__ = [
    "DETAILS_FORMAT",
    "ModelUse",
    "Planned",
    "RenderDetails",
    "changes",
    "open_regular",
    "planned",
    "read_png_texts",
    "render_details",
]

DETAILS_FORMAT = 1  # bump when RenderDetails changes: cached details are read again
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WANTED = frozenset({"prompt", "storycore"})
MAX_TEXT = 4 * 1024 * 1024  # a text chunk larger than this is not read (a hostile file)
MAX_HEADER_CHUNKS = 256  # chunks before the image data that we are willing to walk

# input name -> kind of model, in the order the page lists them
_MODEL_INPUTS = {
    "ckpt_name": "Checkpoint",
    "unet_name": "Diffusion model",
    "clip_name1": "Text encoder",
    "clip_name2": "Text encoder",
    "clip_name3": "Text encoder",
    "vae_name": "VAE",
    "lora_name": "LoRA",
    "control_net_name": "ControlNet",
    "ipadapter_file": "IP-Adapter",
    "style_model_name": "Style model",
}
_KIND_ORDER = (
    "Checkpoint",
    "Diffusion model",
    "Text encoder",
    "VAE",
    "LoRA",
    "ControlNet",
    "IP-Adapter",
    "CLIP vision",
    "Style model",
    "Upscaler",
    "Model",
)
_SAMPLER_KEYS = ("steps", "cfg", "sampler_name", "scheduler", "denoise")


@dataclass(frozen=True)
class ModelUse:
    """One model a render loaded: its kind (``LoRA``), file name, and a note (strengths)."""

    kind: str
    name: str
    note: str = ""


@dataclass(frozen=True)
class RenderDetails:
    """What one image was rendered with. ``workflow`` says whether the image carried the graph
    it was made from (sampler settings and labelled models come only from there)."""

    positive: str | None = None
    negative: str | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    models: tuple[ModelUse, ...] = ()
    samplers: int = 0
    workflow: bool = False

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["models"] = [[m.kind, m.name, m.note] for m in self.models]
        return json.dumps([DETAILS_FORMAT, data], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RenderDetails | None:
        """The details :meth:`to_json` wrote; None for another format, damaged text or any
        value of the wrong type (the cache travels with a project: it is read as hostile)."""
        try:
            version, data = json.loads(text)
        except (ValueError, TypeError, RecursionError):
            return None
        if version != DETAILS_FORMAT or not isinstance(data, dict) or set(data) - _FIELDS:
            return None
        models = data.get("models", [])
        if not isinstance(models, list) or not all(
            isinstance(m, list) and len(m) == 3 and all(isinstance(p, str) for p in m)
            for m in models
        ):
            return None
        for name, kinds in _FIELD_TYPES.items():
            value = data.get(name)
            if value is not None and (isinstance(value, bool) != (bool in kinds)):
                return None
            if value is not None and not isinstance(value, kinds):
                return None
        data["models"] = tuple(ModelUse(*m) for m in models)
        for name in ("cfg", "denoise"):
            if data.get(name) is not None:
                data[name] = float(data[name])
        try:
            return cls(**data)
        except TypeError:
            return None


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "positive": (str,),
    "negative": (str,),
    "steps": (int,),
    "cfg": (int, float),
    "sampler": (str,),
    "scheduler": (str,),
    "denoise": (int, float),
    "seed": (int,),
    "width": (int,),
    "height": (int,),
    "samplers": (int,),
    "workflow": (bool,),
}
_FIELDS = frozenset({*_FIELD_TYPES, "models"})


# ---------------------------------------------------------------- reading the PNG's text chunks
def _decode_text(kind: bytes, body: bytes) -> tuple[str, str] | None:
    keyword, sep, rest = body.partition(b"\0")
    if not sep:
        return None
    name = keyword.decode("latin-1")
    if name not in WANTED:
        return None
    try:
        if kind == b"tEXt":
            return name, rest.decode("latin-1")
        if kind == b"zTXt":
            return name, _inflate(rest[1:]).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]  # iTXt: flag, method
        _lang, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return name, (_inflate(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        return None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk inflates past the limit")
    return out


def _texts(handle: IO[bytes]) -> Iterator[tuple[str, str]]:
    if handle.read(8) != PNG_SIGNATURE:
        return
    for _ in range(MAX_HEADER_CHUNKS):
        header = handle.read(8)
        if len(header) < 8:
            return
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind in (b"IDAT", b"IEND"):
            return
        if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= MAX_TEXT:
            body = handle.read(length)
            if len(body) < length:
                return
            handle.seek(4, io.SEEK_CUR)  # the CRC (the engine checked it when it landed)
            found = _decode_text(kind, body)
            if found is not None:
                yield found
        else:
            handle.seek(length + 4, io.SEEK_CUR)


def open_regular(path: Path) -> IO[bytes] | None:
    """``path`` open for reading when it is a regular file; None otherwise (missing, a folder,
    or a FIFO or device planted under a render's name, whose open or read would block)."""
    return open_plain_for_reading(path, follow_link=True)


def read_png_texts(source: Path | bytes) -> dict[str, str]:
    """The ``prompt`` and ``storycore`` text chunks of a PNG file (or its bytes); ``{}`` for
    a file that is missing, unreadable, not a regular file or not a PNG."""
    try:
        if isinstance(source, bytes):
            return dict(_texts(io.BytesIO(source)))
        handle = open_regular(source)
        if handle is None:
            return {}
        with handle:
            return dict(_texts(handle))
    except OSError:
        return {}


# ---------------------------------------------------------------- reading the graph
def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _nodes(graph: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(id, class_type, inputs)`` of every node, in id order; samplers first."""
    out = []
    for node_id in sorted(graph, key=node_sort_key):
        node = graph[node_id]
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            out.append((node_id, str(node.get("class_type", "")), node["inputs"]))
    out.sort(key=lambda n: "Sampler" not in n[1])  # stable: id order within each group
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _models(nodes: list[tuple[str, str, dict[str, Any]]]) -> tuple[ModelUse, ...]:
    found: list[ModelUse] = []
    for _, class_type, inputs in nodes:
        for key, value in inputs.items():
            if not isinstance(value, str) or not value:
                continue
            kind = _MODEL_INPUTS.get(key)
            if key == "clip_name":
                kind = "CLIP vision" if "Vision" in class_type else "Text encoder"
            elif key == "model_name" and "Upscale" in class_type:
                kind = "Upscaler"
            elif key == "preset" and class_type.startswith("IPAdapter"):
                kind, value = "IP-Adapter", f"preset: {value}"
            if kind is None:
                continue
            note = ""
            if kind == "LoRA":
                strengths = [_number(inputs.get(k)) for k in ("strength_model", "strength_clip")]
                shown = [f"{s:g}" for s in strengths if s is not None]
                if len(shown) == 2:
                    note = f"strength {shown[0]} / {shown[1]} (model / clip)"
                elif shown:
                    note = f"strength {shown[0]}"
            use = ModelUse(kind, value, note)
            if use not in found:
                found.append(use)
    return tuple(sorted(found, key=lambda m: _KIND_ORDER.index(m.kind)))


def _linked_text(graph: dict[str, Any], link: Any, want: str, depth: int = 0) -> str | None:
    """The prompt text a conditioning input comes from, following links back to a text
    encoder (through ControlNet, IP-Adapter or combine nodes)."""
    if depth > 24 or not (isinstance(link, list) and link and isinstance(link[0], str | int)):
        return None
    node = graph.get(str(link[0]))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return None
    for key in ("text", "text_g"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    for key in (want, "conditioning", "conditioning_to", "conditioning_1", "guider"):
        found = _linked_text(graph, inputs.get(key), want, depth + 1)
        if found is not None:
            return found
    return None


def render_details(
    texts: dict[str, str],
    *,
    seed: int | None = None,
    size: tuple[int, int] | None = None,
    checkpoint: str | None = None,
    models: Sequence[str] = (),
) -> RenderDetails:
    """The details of a render from its PNG text chunks. The manifest record's ``seed`` and
    ``size`` win over what the graph says; its ``checkpoint`` and ``models`` (names without
    their kind) stand in for the graph's loaders when the image carries no graph."""
    ours = _json_object(texts.get("storycore"))
    graph = _json_object(texts.get("prompt"))
    nodes = _nodes(graph)
    values: dict[str, Any] = {}
    samplers = [n for n in nodes if "Sampler" in n[1] and "steps" in n[2]]
    for key in (*_SAMPLER_KEYS, "seed", "noise_seed", "width", "height"):
        for _, _, inputs in nodes:
            value = inputs.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                values.setdefault(key, value)
                break
    positive, negative = ours.get("positive"), ours.get("negative")
    for _, _, inputs in samplers[:1] or [n for n in nodes if "positive" in n[2]][:1]:
        if not isinstance(positive, str):
            positive = _linked_text(graph, inputs.get("positive"), "positive")
        if not isinstance(negative, str):
            negative = _linked_text(graph, inputs.get("negative"), "negative")
    graph_seed = values.get("seed", values.get("noise_seed"))
    if seed is None:
        seed = ours.get("seed") if isinstance(ours.get("seed"), int) else None
    if seed is None and isinstance(graph_seed, int):
        seed = graph_seed
    width, height = size if size and size[0] > 0 and size[1] > 0 else (None, None)
    steps, cfg, denoise = (_number(values.get(k)) for k in ("steps", "cfg", "denoise"))
    latent_w, latent_h = (_number(values.get(k)) for k in ("width", "height"))
    return RenderDetails(
        positive=positive if isinstance(positive, str) else None,
        negative=negative if isinstance(negative, str) else None,
        steps=int(steps) if steps is not None else None,
        cfg=cfg,
        sampler=_str(values.get("sampler_name")),
        scheduler=_str(values.get("scheduler")),
        denoise=denoise,
        seed=seed,
        width=width if width is not None else (int(latent_w) if latent_w else None),
        height=height if height is not None else (int(latent_h) if latent_h else None),
        models=_models(nodes) if graph else _fallback_models(ours, checkpoint, models),
        samplers=len(samplers),
        workflow=bool(graph),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _fallback_models(
    ours: dict[str, Any], checkpoint: str | None, models: Sequence[str]
) -> tuple[ModelUse, ...]:
    if checkpoint is None and isinstance(ours.get("checkpoint"), str):
        checkpoint = ours["checkpoint"]
    found = [ModelUse("Checkpoint", checkpoint)] if checkpoint else []
    found += [ModelUse("Model", name) for name in models if name and name != checkpoint]
    return tuple(found)


# ---------------------------------------------------------------- the storyboard today
@dataclass(frozen=True)
class Planned:
    """What the storyboard asks of a shot today: the composed prompt, and the values the shot
    sets itself (None where it leaves them to the project's settings)."""

    positive: str
    version: int
    negative: str | None = None
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    checkpoint: str | None = None
    loras: tuple[str, ...] = field(default=())


def planned(shot: dict[str, Any], anchors: dict[str, Any]) -> Planned | None:
    """The storyboard's wishes for ``shot`` (its JSON); None when the shot does not validate."""
    from storycore.panels import compose_prompt
    from storycore.project import Shot, parse_version

    try:
        model = Shot.model_validate(shot)
        version = parse_version(model.version)
    except (ValidationError, ValueError, TypeError):
        return None
    tech = model.prompt_modules.technical
    return Planned(
        positive=compose_prompt(model, anchors),
        version=version,
        negative=tech.negative_prompt,
        seed=tech.seed,
        steps=tech.steps,
        cfg=tech.cfg_scale,
        sampler=tech.sampler,
        scheduler=tech.scheduler,
        checkpoint=tech.checkpoint,
        loras=tuple(lora.name for lora in model.references.loras),
    )


def changes(
    details: RenderDetails,
    plan: Planned,
    *,
    version: int,
    checkpoint: str | None,
    own_graph: bool,
) -> dict[str, str]:
    """What the storyboard asks for now that differs from what was rendered: label -> the
    storyboard's value (only where both sides are known). ``own_graph``: StoryCore built the
    graph (no user template), so every LoRA it loaded came from the storyboard."""
    out: dict[str, str] = {}
    if plan.version != version:
        out["version"] = f"v{plan.version}"
    pairs: list[tuple[str, Any, Any]] = [
        ("prompt", details.positive, plan.positive),
        ("negative prompt", details.negative, plan.negative),
        ("steps", details.steps, plan.steps),
        ("sampler", details.sampler, plan.sampler),
        ("scheduler", details.scheduler, plan.scheduler),
        ("checkpoint", checkpoint, plan.checkpoint),
    ]
    for label, rendered, wanted in pairs:
        if rendered is None or wanted is None:
            continue
        if str(rendered).strip() != str(wanted).strip():
            out[label] = str(wanted)
    if details.cfg is not None and plan.cfg is not None and abs(details.cfg - plan.cfg) > 1e-6:
        out["cfg"] = f"{plan.cfg:g}"
    if details.workflow and (own_graph or plan.loras):
        rendered_loras = sorted(m.name for m in details.models if m.kind == "LoRA")
        if rendered_loras != sorted(plan.loras):
            out["LoRAs"] = ", ".join(plan.loras) or "none"
    return out
