"""Node implementations: real Pillow semantics for image nodes, placeholders for model nodes.

This module holds the core image and model nodes; values (primitives, text) are in
_node_values.py, shapes (crop, scale, pad, batch, stitch) in _node_shapes.py, samplers and
their progress in _node_sampling.py, other output nodes in _node_outputs.py.

Each implementation is a plain (blocking) function ``(ctx, inputs) -> NodeResult`` that the
executor runs in a worker thread. Model nodes carry small descriptive values (which checkpoint,
which prompt, which seed) down the graph, and ``VAEDecode`` turns them into a deterministic
placeholder picture. Any node class without an implementation gets a generic one that passes
its first input of each output type through (see :func:`generic`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageOps

from ._images import Images, placeholder, save_png, solid
from ._node_outputs import OUTPUT_IMPLEMENTATIONS
from ._node_sampling import SAMPLING_IMPLEMENTATIONS, sample_latent
from ._node_shapes import SHAPE_IMPLEMENTATIONS, scale_image
from ._node_types import Conditioning, Latent, ModelRef, NodeContext, NodeResult, Sigmas
from ._node_values import VALUE_IMPLEMENTATIONS
from ._prefix import save_path

__all__ = [
    "IMPLEMENTATIONS",
    "Conditioning",
    "Latent",
    "ModelRef",
    "NodeContext",
    "NodeResult",
    "generic",
    "resolve_input_image",
]


def resolve_input_image(name: str, input_dir: Path, output_dir: Path, temp_dir: Path) -> Path:
    """``LoadImage`` names: ``sub/x.png``, ``x.png [output]``, ``x.png [temp]``."""
    base = input_dir
    for tag, folder in ((" [output]", output_dir), (" [input]", input_dir), (" [temp]", temp_dir)):
        if name.endswith(tag):
            name, base = name[: -len(tag)], folder
            break
    return base / name


def _save_images(ctx: NodeContext, images: Images, prefix: str, kind: str) -> NodeResult:
    root = ctx.output_dir if kind == "output" else ctx.temp_dir
    if kind == "temp":
        prefix += "_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    w, h = images[0].size if images else (0, 0)
    # Server-side variables only (_prefix.py); the size is the first image's, as nodes.py
    # SaveImage @ a125cd84 passes images[0].shape[1], shape[0] ([H, W, C]: width, height).
    folder, filename, counter, sub = save_path(root, prefix, w, h)
    results = []
    level = 4 if kind == "output" else 1
    for i, img in enumerate(images):
        name = f"{filename.replace('%batch_num%', str(i))}_{counter:05}_.png"
        save_png(
            img, folder / name, prompt=ctx.prompt, extra_pnginfo=ctx.extra_pnginfo, level=level
        )
        results.append({"filename": name, "subfolder": sub, "type": kind})
        counter += 1
    return NodeResult((), {"images": results})


def _check_batches(a: Images, b: Images) -> None:
    if len(a) != len(b) and len(a) != 1 and len(b) != 1:
        raise RuntimeError(
            f"The size of tensor a ({len(a)}) must match the size of tensor b ({len(b)}) "
            "at non-singleton dimension 0"
        )


def _pair(a: Images, b: Images) -> list[tuple[Image.Image, Image.Image]]:
    _check_batches(a, b)
    n = max(len(a), len(b))
    return [(a[min(i, len(a) - 1)], b[min(i, len(b) - 1)]) for i in range(n)]


def _blend(a: Image.Image, b: Image.Image, factor: float, mode: str) -> Image.Image:
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.BICUBIC)
    if mode == "multiply":
        mixed = ImageChops.multiply(a, b)
    elif mode == "screen":
        mixed = ImageChops.screen(a, b)
    elif mode == "overlay":
        mixed = ImageChops.overlay(a, b)
    elif mode == "soft_light":
        mixed = ImageChops.soft_light(a, b)
    elif mode == "difference":
        mixed = ImageChops.difference(a, b)
    else:
        mixed = b
    return Image.blend(a, mixed, float(factor))


def _edges(images: Images) -> Images:
    return [img.convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB") for img in images]


# ---- image nodes ----------------------------------------------------------------------------
def empty_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img = solid(int(i["width"]), int(i["height"]), int(i["color"]))
    return NodeResult(([img] * int(i["batch_size"]),))


def load_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    path = resolve_input_image(str(i["image"]), ctx.input_dir, ctx.output_dir, ctx.temp_dir)
    with Image.open(path) as opened:
        opened.load()
        rgba = opened.convert("RGBA") if "A" in opened.getbands() else None
        rgb = opened.convert("RGB")
    if rgba is not None:
        mask = ImageOps.invert(rgba.getchannel("A"))
    else:
        mask = Image.new("L", (64, 64), 0)
    return NodeResult(([rgb], [mask]))


def save_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _save_images(ctx, i["images"], str(i.get("filename_prefix", "ComfyUI")), "output")


def preview_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _save_images(ctx, i["images"], "ComfyUI", "temp")


def mask_preview(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_mask.py MaskPreview (0.3.64: a SaveImage to temp of the mask as grey
    # RGB, prefix "ComfyUI_temp_" + 5 letters): ui {"images": [temp files]}.
    return _save_images(ctx, [m.convert("RGB") for m in i["mask"]], "ComfyUI", "temp")


def image_invert(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult(([ImageOps.invert(img.convert("RGB")) for img in i["image"]],))


def image_blend(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    factor, mode = float(i["blend_factor"]), str(i["blend_mode"])
    return NodeResult(([_blend(a, b, factor, mode) for a, b in _pair(i["image1"], i["image2"])],))


def image_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py ImageBatch: image2 is scaled to image1's size (bilinear, center crop).
    first: Images = i["image1"]
    w, h = first[0].size
    second = [
        img if img.size == (w, h) else scale_image(img, "bilinear", w, h, "center")
        for img in i["image2"]
    ]
    return NodeResult(([*first, *second],))


def image_blur(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    radius = float(i.get("sigma", 1.0))
    return NodeResult(([img.filter(ImageFilter.GaussianBlur(radius)) for img in i["image"]],))


def canny(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((_edges(i["image"]),))


# ---- model nodes ----------------------------------------------------------------------------
def checkpoint_loader(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(i["ckpt_name"])
    return NodeResult((ModelRef("MODEL", name), ModelRef("CLIP", name), ModelRef("VAE", name)))


def clip_text_encode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    clip: ModelRef = i["clip"]
    return NodeResult((Conditioning(str(i["text"]), clip.notes),))


def empty_latent(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Latent(int(i["width"]), int(i["height"]), int(i["batch_size"])),))


def ksampler(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    seed = int(i.get("seed", i.get("noise_seed", 0)))
    summary = f"{i.get('sampler_name', '?')} {i.get('steps', '?')} steps cfg {i.get('cfg', '?')}"
    out = sample_latent(i["latent_image"], i.get("model"), i.get("positive"), seed, summary)
    return NodeResult((out,))


def vae_decode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    lat: Latent = i["samples"]
    # Latents are 1/8 of the picture: sizes come back rounded down to a multiple of 8.
    width, height = max(8, lat.width // 8 * 8), max(8, lat.height // 8 * 8)
    images = []
    for n in range(max(1, lat.batch)):
        seed = None if lat.seed is None else lat.seed + n
        base = lat.base[min(n, len(lat.base) - 1)] if lat.base else None
        images.append(
            placeholder(width, height, prompt=lat.prompt, seed=seed, extra=lat.notes, base=base)
        )
    return NodeResult((images,))


def vae_encode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    pixels: Images = i["pixels"]
    w, h = pixels[0].size
    return NodeResult((Latent(w, h, len(pixels), base=tuple(pixels)),))


def lora_loader(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    note = f"lora {i['lora_name']}"
    model: ModelRef = i["model"]
    out: list[Any] = [replace(model, notes=(*model.notes, note))]
    if "clip" in i:
        clip: ModelRef = i["clip"]
        out.append(replace(clip, notes=(*clip.notes, note)))
    return NodeResult(tuple(out))


def _loader(kind: str, key: str) -> Callable[[NodeContext, dict[str, Any]], NodeResult]:
    def run(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
        return NodeResult((ModelRef(kind, str(i[key])),))

    return run


def controlnet_apply(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    cn = i["control_net"]
    note = f"controlnet {getattr(cn, 'name', '?')} x{i.get('strength', 1.0)}"
    out = []
    for key in ("positive", "negative"):
        cond = i[key]
        text = cond.text if isinstance(cond, Conditioning) else ""
        notes = cond.notes if isinstance(cond, Conditioning) else ()
        out.append(Conditioning(text, (*notes, note)))
    return NodeResult(tuple(out))


def ipadapter_unified_loader(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    if not ctx.model_files("clip_vision"):
        raise Exception("ClipVision model not found.")
    if not ctx.model_files("ipadapter"):
        raise Exception("IPAdapter model not found.")
    model: ModelRef = i["model"]
    preset = str(i.get("preset", ""))
    return NodeResult(
        (replace(model, notes=(*model.notes, f"ipadapter {preset}")), ModelRef("IPADAPTER", preset))
    )


def ipadapter_apply(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    model: ModelRef = i["model"]
    ip = i.get("ipadapter")
    note = f"ipadapter {getattr(ip, 'name', '?')} w{i.get('weight', 1.0)}"
    return NodeResult((replace(model, notes=(*model.notes, note)),))


def latent_upscale(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    lat: Latent = i["samples"]
    w, h = int(i["width"]), int(i["height"])
    if w == 0 and h == 0:
        return NodeResult((lat,))
    if w == 0:
        w = max(8, round(lat.width * h / max(1, lat.height)))
    elif h == 0:
        h = max(8, round(lat.height * w / max(1, lat.width)))
    return NodeResult((replace(lat, width=w, height=h),))


def solid_mask(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    value = max(0, min(255, round(float(i["value"]) * 255)))
    return NodeResult(([Image.new("L", (int(i["width"]), int(i["height"])), value)],))


def mask_to_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult(([m.convert("RGB") for m in i["mask"]],))


def upscale_with_model(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(getattr(i.get("upscale_model"), "name", ""))
    factor = 2 if "x2" in name.lower() else 4
    images: Images = i["image"]
    return NodeResult(
        (
            [
                img.resize((img.width * factor, img.height * factor), Image.Resampling.LANCZOS)
                for img in images
            ],
        )
    )


def save_image_websocket(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((), None)  # frames are sent by the executor


IMPLEMENTATIONS: dict[str, Callable[[NodeContext, dict[str, Any]], NodeResult]] = {
    "EmptyImage": empty_image,
    "LoadImage": load_image,
    "SaveImage": save_image,
    "PreviewImage": preview_image,
    "MaskPreview": mask_preview,
    "ImageInvert": image_invert,
    "ImageBlend": image_blend,
    "ImageBatch": image_batch,
    "ImageBlur": image_blur,
    "Canny": canny,
    "CheckpointLoaderSimple": checkpoint_loader,
    "CLIPTextEncode": clip_text_encode,
    "EmptyLatentImage": empty_latent,
    "KSampler": ksampler,
    "KSamplerAdvanced": ksampler,
    "VAEDecode": vae_decode,
    "VAEDecodeTiled": vae_decode,
    "VAEEncode": vae_encode,
    "LoraLoader": lora_loader,
    "LoraLoaderModelOnly": lora_loader,
    "VAELoader": _loader("VAE", "vae_name"),
    "ControlNetLoader": _loader("CONTROL_NET", "control_net_name"),
    "CLIPVisionLoader": _loader("CLIP_VISION", "clip_name"),
    "IPAdapterModelLoader": _loader("IPADAPTER", "ipadapter_file"),
    "ControlNetApplyAdvanced": controlnet_apply,
    "IPAdapterUnifiedLoader": ipadapter_unified_loader,
    "IPAdapterAdvanced": ipadapter_apply,
    "IPAdapter": ipadapter_apply,
    "SaveImageWebsocket": save_image_websocket,
    "LatentUpscale": latent_upscale,
    "SolidMask": solid_mask,
    "MaskToImage": mask_to_image,
    "UpscaleModelLoader": _loader("UPSCALE_MODEL", "model_name"),
    "ImageUpscaleWithModel": upscale_with_model,
    **VALUE_IMPLEMENTATIONS,
    **SHAPE_IMPLEMENTATIONS,
    **SAMPLING_IMPLEMENTATIONS,
    **OUTPUT_IMPLEMENTATIONS,
}


def generic(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    """Any other node: pass through the first input of each output type, else a placeholder.

    Preprocessors (IMAGE in, IMAGE out) get an edge map of their input so the output follows it.
    """
    outputs: list[Any] = []
    for rtype in ctx.return_types:
        found = next((v for v in i.values() if _has_type(v, rtype)), None)
        if rtype == "IMAGE" and found is not None and "Preprocessor" in ctx.class_type:
            found = _edges(found)
        if found is None:
            found = _default_value(ctx, rtype, i)
        outputs.append(found)
    return NodeResult(tuple(outputs))


def _has_type(value: Any, rtype: Any) -> bool:
    if rtype in ("IMAGE", "MASK"):
        mode = "RGB" if rtype == "IMAGE" else "L"
        return (
            isinstance(value, list)
            and bool(value)
            and isinstance(value[0], Image.Image)
            and value[0].mode == mode
        )
    if rtype == "LATENT":
        return isinstance(value, Latent)
    if rtype == "SIGMAS":
        return isinstance(value, Sigmas)
    if rtype == "CONDITIONING":
        return isinstance(value, Conditioning)
    return isinstance(value, ModelRef) and value.kind == rtype


def _default_value(ctx: NodeContext, rtype: Any, i: dict[str, Any]) -> Any:
    width = int(i.get("width", 512)) if isinstance(i.get("width"), int | float) else 512
    height = int(i.get("height", 512)) if isinstance(i.get("height"), int | float) else 512
    if rtype == "IMAGE":
        return [placeholder(width, height, prompt=ctx.class_type, seed=None)]
    if rtype == "MASK":
        return [Image.new("L", (width, height), 0)]
    if rtype == "LATENT":
        # An encoder of pixels (VAEEncodeForInpaint, InpaintModelConditioning, VAEEncodeTiled,
        # ...): the latent of those pixels, their size and batch.
        pixels = next((v for v in i.values() if _has_type(v, "IMAGE")), None)
        if pixels is not None:
            pw, ph = pixels[0].size
            return Latent(pw, ph, len(pixels), base=tuple(pixels))
        return Latent(width, height, 1)
    if rtype == "CONDITIONING":
        return Conditioning(str(i.get("text", "")))
    if rtype in _SCALAR_DEFAULTS:
        return _SCALAR_DEFAULTS[rtype]
    if rtype == "SIGMAS":
        steps = i.get("steps")
        return Sigmas(int(steps) if isinstance(steps, int | float) else 1)
    return ModelRef(str(rtype), ctx.class_type)


# An unknown node's value outputs: a value of the right type, never a model record.
_SCALAR_DEFAULTS: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}
