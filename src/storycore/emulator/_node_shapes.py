"""Image and latent shape nodes: the sizes and batch counts a real ComfyUI gives.

Each function cites the ComfyUI source it follows (file @ commit). Images are lists of Pillow
images (one per batch item), so a batch of N is a list of length N and a crop or scale changes
every item the same way. Only sizes and counts are promised; the pixels are Pillow's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PIL import Image

from ._images import Images
from ._node_types import Latent, NodeContext, NodeResult

__all__ = ["SHAPE_IMPLEMENTATIONS", "scale_image"]

Impl = Callable[[NodeContext, dict[str, Any]], NodeResult]

_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bislerp": Image.Resampling.BICUBIC,
}


def _resize(img: Image.Image, method: str, width: int, height: int) -> Image.Image:
    size = (max(1, width), max(1, height))
    if img.size == size:
        return img
    return img.resize(size, _RESAMPLE.get(method, Image.Resampling.BICUBIC))


def scale_image(img: Image.Image, method: str, width: int, height: int, crop: str) -> Image.Image:
    """nodes.py ImageScale @ a125cd84 with comfy/utils.py common_upscale (center crop)."""
    w0, h0 = img.size
    if width == 0 and height == 0:
        return img
    if width == 0:
        width = max(1, round(w0 * height / h0))
    elif height == 0:
        height = max(1, round(h0 * width / w0))
    if crop == "center":
        old_aspect, new_aspect = w0 / h0, width / height
        if old_aspect > new_aspect:
            x = round((w0 - w0 * (new_aspect / old_aspect)) / 2)
            img = img.crop((x, 0, w0 - x, h0))
        elif old_aspect < new_aspect:
            y = round((h0 - h0 * (old_aspect / new_aspect)) / 2)
            img = img.crop((0, y, w0, h0 - y))
    return _resize(img, method, width, height)


def _image_scale(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    w, h = int(i["width"]), int(i["height"])
    method, crop = str(i["upscale_method"]), str(i["crop"])
    return NodeResult(([scale_image(img, method, w, h, crop) for img in i["image"]],))


def _image_scale_by(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py ImageScaleBy: width = round(W * scale_by), height = round(H * scale_by).
    scale = float(i["scale_by"])
    method = str(i["upscale_method"])
    out = [
        _resize(img, method, round(img.width * scale), round(img.height * scale))
        for img in i["image"]
    ]
    return NodeResult((out,))


def _image_scale_to_total_pixels(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_post_processing.py ImageScaleToTotalPixels. 0.3.64 (no
    # resolution_steps input): total = int(megapixels * 1024 * 1024), s = sqrt(total / (W * H)),
    # round(W * s) x round(H * s). Today's (@ 0c853489, with resolution_steps r): total is not
    # truncated and each side is round(side * s / r) * r.
    megapixels = float(i["megapixels"])
    method = str(i["upscale_method"])
    steps = i.get("resolution_steps")
    out = []
    for img in i["image"]:
        if isinstance(steps, int) and steps >= 1:
            s = math.sqrt(megapixels * 1024 * 1024 / (img.width * img.height))
            w, h = (round(side * s / steps) * steps for side in img.size)
        else:
            s = math.sqrt(int(megapixels * 1024 * 1024) / (img.width * img.height))
            w, h = round(img.width * s), round(img.height * s)
        out.append(_resize(img, method, w, h))
    return NodeResult((out,))


def _image_crop(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py ImageCrop @ 015e6046: x, y clamp to the last pixel; the
    # slice [y:y+height, x:x+width] stops at the edge (a crop never grows the picture).
    images: Images = i["image"]
    w0, h0 = images[0].size
    x = min(int(i["x"]), w0 - 1)
    y = min(int(i["y"]), h0 - 1)
    right, bottom = min(w0, x + int(i["width"])), min(h0, y + int(i["height"]))
    return NodeResult(([img.crop((x, y, right, bottom)) for img in images],))


def _pad_for_outpaint(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py ImagePadForOutpaint: a (H+top+bottom) x (W+left+right) canvas of 0.5 grey with
    # the picture at (left, top); the mask is 1 on the new border, 0 on the picture, and
    # ((feathering - d) / feathering)^2 within ``feathering`` pixels of a padded side (d: the
    # distance to the nearest padded side); one mask for the whole batch.
    left, top = int(i["left"]), int(i["top"])
    right, bottom = int(i["right"]), int(i["bottom"])
    feather = int(i["feathering"])
    images: Images = i["image"]
    w0, h0 = images[0].size
    size = (w0 + left + right, h0 + top + bottom)
    out = []
    for img in images:
        canvas = Image.new("RGB", size, (128, 128, 128))
        canvas.paste(img, (left, top))
        out.append(canvas)
    mask = Image.new("L", size, 255)
    inner = Image.new("L", (w0, h0), 0)
    if feather > 0 and feather * 2 < h0 and feather * 2 < w0:
        inner = _feather(w0, h0, feather, (left > 0, top > 0, right > 0, bottom > 0))
    mask.paste(inner, (left, top))
    return NodeResult((out, [mask]))


def _feather(w0: int, h0: int, feather: int, padded: tuple[bool, bool, bool, bool]) -> Image.Image:
    """The picture's part of the outpaint mask: ``((f - d) / f)^2`` where ``d`` (the distance
    to the nearest padded side: y, H - y, x, W - x) is under ``f``; built row by row from byte
    slices so a large picture costs O(H) joins, not O(W * H) Python steps."""
    left, top, right, bottom = padded
    lut = bytes(round(((feather - d) / feather) ** 2 * 255) for d in range(feather)) + b"\0"

    def shade(d: int) -> int:
        return lut[min(d, feather)]

    dx = [min(x if left else w0, w0 - x if right else w0) for x in range(w0)]
    base = bytes(shade(d) for d in dx)  # a row far from the top and bottom
    rows = []
    for y in range(h0):
        dy = min(y if top else h0, h0 - y if bottom else h0)
        if dy >= feather:
            rows.append(base)
            continue
        # Columns nearer a side than dy keep their own shade; the rest take dy's.
        a = min(dy, w0) if left else 0
        b = min(w0, max(a, w0 - dy + 1)) if right else w0
        rows.append(base[:a] + bytes([shade(dy)]) * (b - a) + base[b:])
    return Image.frombytes("L", (w0, h0), b"".join(rows))


def _repeat_image_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py RepeatImageBatch: image.repeat((amount, 1, 1, 1)), i.e.
    # the whole batch ``amount`` times in a row.
    return NodeResult((list(i["image"]) * int(i["amount"]),))


def _image_from_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py ImageFromBatch: index clamps into the batch (a negative one
    # counts from the end in newer ComfyUI; 0.3.64's minimum is 0), length to what is left.
    images: Images = i["image"]
    n = len(images)
    index = int(i["batch_index"])
    if index < 0:
        index += n
    index = max(0, min(n - 1, index))
    length = min(n - index, int(i["length"]))
    return NodeResult((images[index : index + length],))


_COLORS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
}


def _stitch_pair(
    a: Image.Image, b: Image.Image, direction: str, match: bool, spacing: int, color: str
) -> Image.Image:
    horizontal = direction in ("left", "right")
    if match:
        aspect = b.width / b.height
        if horizontal:
            b = _resize(b, "lanczos", int(a.height * aspect), a.height)
        else:
            b = _resize(b, "lanczos", a.width, int(a.width / aspect))
    pad = _COLORS[color] if color in ("white", "black") else (0, 0, 0)
    first, second = (b, a) if direction in ("left", "up") else (a, b)
    if spacing > 0:
        spacing += spacing % 2
    if horizontal:
        h = max(first.height, second.height)
        canvas = Image.new("RGB", (first.width + spacing + second.width, h), pad)
        canvas.paste(first, (0, (h - first.height) // 2))
        if spacing:
            canvas.paste(Image.new("RGB", (spacing, h), _COLORS[color]), (first.width, 0))
        canvas.paste(second, (first.width + spacing, (h - second.height) // 2))
    else:
        w = max(first.width, second.width)
        canvas = Image.new("RGB", (w, first.height + spacing + second.height), pad)
        canvas.paste(first, ((w - first.width) // 2, 0))
        if spacing:
            canvas.paste(Image.new("RGB", (w, spacing), _COLORS[color]), (0, first.height))
        canvas.paste(second, ((w - second.width) // 2, first.height + spacing))
    return canvas


def _image_stitch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py ImageStitch @ 015e6046: no image2 -> image1; the shorter
    # batch repeats its last image; match_image_size scales image2 to image1's height (left,
    # right) or width (up, down) keeping its aspect (int()); otherwise the smaller one is
    # centred; an odd spacing_width is made even.
    first: Images = i["image1"]
    second: Images | None = i.get("image2")
    if not second:
        return NodeResult((first,))
    n = max(len(first), len(second))
    out = [
        _stitch_pair(
            first[min(k, len(first) - 1)],
            second[min(k, len(second) - 1)],
            str(i["direction"]),
            bool(i["match_image_size"]),
            int(i["spacing_width"]),
            str(i["spacing_color"]),
        )
        for k in range(n)
    ]
    return NodeResult((out,))


def _image_flip(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    how = (
        Image.Transpose.FLIP_TOP_BOTTOM
        if str(i["flip_method"]).startswith("x")
        else Image.Transpose.FLIP_LEFT_RIGHT
    )
    return NodeResult(([img.transpose(how) for img in i["image"]],))


def _image_rotate(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # torch.rot90(k, dims=[2, 1]) turns clockwise.
    turns = {"90": Image.Transpose.ROTATE_270, "180": Image.Transpose.ROTATE_180}
    turns["270"] = Image.Transpose.ROTATE_90
    rotation = str(i["rotation"]).split(" ")[0]
    if rotation not in turns:
        return NodeResult((i["image"],))
    return NodeResult(([img.transpose(turns[rotation]) for img in i["image"]],))


def _repeat_latent_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py RepeatLatentBatch: batch * amount.
    lat: Latent = i["samples"]
    base = lat.base * int(i["amount"]) if lat.base else ()
    return NodeResult((replace(lat, batch=lat.batch * int(i["amount"]), base=base),))


def _latent_from_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py LatentFromBatch: index clamps to the last item, length to what is left.
    lat: Latent = i["samples"]
    index = min(lat.batch - 1, int(i["batch_index"]))
    length = min(lat.batch - index, int(i["length"]))
    seed = None if lat.seed is None else lat.seed + index
    base = lat.base[index : index + length] if lat.base else ()
    return NodeResult((replace(lat, batch=length, seed=seed, base=base),))


def _latent_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_latent.py LatentBatch: samples2 is scaled to samples1's size.
    a: Latent = i["samples1"]
    b: Latent = i["samples2"]
    return NodeResult((replace(a, batch=a.batch + b.batch, base=a.base + b.base),))


def _latent_upscale_by(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes.py LatentUpscaleBy: round(latent side * scale_by), latents being 1/8 of pixels.
    lat: Latent = i["samples"]
    s = float(i["scale_by"])
    w = round(lat.width // 8 * s) * 8
    h = round(lat.height // 8 * s) * 8
    return NodeResult((replace(lat, width=max(8, w), height=max(8, h)),))


SHAPE_IMPLEMENTATIONS: dict[str, Impl] = {
    "ImageScale": _image_scale,
    "ImageScaleBy": _image_scale_by,
    "ImageScaleToTotalPixels": _image_scale_to_total_pixels,
    "ImageCrop": _image_crop,
    "ImagePadForOutpaint": _pad_for_outpaint,
    "RepeatImageBatch": _repeat_image_batch,
    "ImageFromBatch": _image_from_batch,
    "ImageStitch": _image_stitch,
    "ImageFlip": _image_flip,
    "ImageRotate": _image_rotate,
    "RepeatLatentBatch": _repeat_latent_batch,
    "LatentFromBatch": _latent_from_batch,
    "LatentBatch": _latent_batch,
    "LatentUpscaleBy": _latent_upscale_by,
}
