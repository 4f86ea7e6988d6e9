"""Read a safetensors header (never the tensors) and guess what model the file holds.

A safetensors file starts with an 8-byte little-endian length N, then N bytes of JSON mapping
tensor names to ``{dtype, shape, data_offsets}`` (plus an optional ``__metadata__``). The guess
comes from the tensor names and shapes, the way ComfyUI's model detection works, not from the
file name; ``__metadata__["modelspec.architecture"]`` is used only when the tensors say nothing.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_HEADER_BYTES",
    "ModelGuess",
    "guess_model",
    "read_safetensors_header",
]

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1}
_CONTEXT_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}
_ARCH_FAMILY = (
    ("stable-diffusion-xl-v1-refiner", "sdxl_refiner"),
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-v1", "sd15"),
    ("stable-diffusion-3", "sd3"),
    ("flux", "flux"),
)


@dataclass(frozen=True)
class ModelGuess:
    """``kind``: checkpoint, diffusion_model, lora, controlnet, vae, clip_vision, ipadapter,
    upscale, text_encoder, embedding or unknown. ``family``: sd15, sd2, sdxl, sdxl_refiner, sd3,
    flux, flux_schnell or unknown. ``parameters``: element count; ``dtype``: the commonest."""

    kind: str
    family: str
    parameters: int
    dtype: str | None
    source: str  # tensors | metadata | none


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The header JSON of ``path``; reads 8 + N bytes only. ``ValueError`` if not safetensors."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path.name}: too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: header length {length} is not plausible")
        raw = handle.read(length)
    if len(raw) != length:
        raise ValueError(f"{path.name}: header cut short ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path.name}: header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: header is not a JSON object")
    return header


def _shape(info: Any) -> list[int]:
    shape = info.get("shape") if isinstance(info, Mapping) else None
    return [int(x) for x in shape] if isinstance(shape, list) else []


def _context_dim(tensors: Mapping[str, Any]) -> int | None:
    """The cross-attention context width: 768 SD1.x, 1024 SD2.x, 2048 SDXL, 1280 refiner."""
    for name, info in tensors.items():
        if name.endswith(("attn2.to_k.weight", "attn2_to_k.lora_down.weight", "to_k_ip.weight")):
            shape = _shape(info)
            if len(shape) == 2:
                return shape[1]
    return None


def _family_from_context(tensors: Mapping[str, Any]) -> str:
    dim = _context_dim(tensors)
    return _CONTEXT_FAMILY.get(dim, "unknown") if dim is not None else "unknown"


class _Names:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def has(self, part: str) -> bool:
        return any(part in n for n in self.names)

    def starts(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for n in self.names)


def _kind_and_family(tensors: Mapping[str, Any]) -> tuple[str, str]:
    names = list(tensors)
    index = _Names(names)
    has, starts = index.has, index.starts

    if has("lora_unet_") or has("lora_te") or has(".lora_up.") or has(".lora_A."):
        if has("double_blocks") or has("single_transformer_blocks"):
            return "lora", "flux"
        if has("lora_te2_") or has("lora_te1_"):
            return "lora", "sdxl"
        return "lora", _family_from_context(tensors)
    if has("double_blocks.") and has("single_blocks."):
        schnell = not has("guidance_in.")
        family = "flux_schnell" if schnell else "flux"
        full = has("text_encoders.") or has("vae.") or has("first_stage_model.")
        return ("checkpoint" if full else "diffusion_model"), family
    if has("joint_blocks."):
        full = has("text_encoders.") or has("first_stage_model.")
        return ("checkpoint" if full else "diffusion_model"), "sd3"
    if starts("control_model.") or has("input_hint_block") or has("controlnet_cond_embedding"):
        return "controlnet", _family_from_context(tensors)
    if starts("image_proj.") and starts("ip_adapter."):
        return "ipadapter", _family_from_context(tensors)
    if starts("model.diffusion_model.") or starts("diffusion_model."):
        label = next((n for n in names if n.endswith("label_emb.0.0.weight")), None)
        if label is not None:
            shape = _shape(tensors[label])
            adm = shape[1] if len(shape) == 2 else 0
            family = {2816: "sdxl", 2560: "sdxl_refiner"}.get(adm, "sdxl")
        elif starts("cond_stage_model.model.") or starts("conditioner.embedders.0.model."):
            family = "sd2"
        else:
            family = _family_from_context(tensors)
        full = starts("first_stage_model.") or starts("cond_stage_model.") or starts("conditioner.")
        return ("checkpoint" if full else "diffusion_model"), family
    if starts("input_blocks.") and has("attn2.to_k.weight"):
        return "diffusion_model", _family_from_context(tensors)
    if has("vision_model.embeddings") and not has("text_model."):
        return "clip_vision", "unknown"
    if starts("encoder.down.") and starts("decoder.up."):
        return "vae", "unknown"
    if has("text_model.encoder.") or starts("encoder.block.") or has("shared.weight"):
        return "text_encoder", "unknown"
    if starts("conv_first.") or starts("model.0.weight") or starts("body."):
        return "upscale", "unknown"
    if "emb_params" in tensors or "clip_l" in tensors or "clip_g" in tensors:
        return "embedding", "unknown"
    return "unknown", "unknown"


def guess_model(header: Mapping[str, Any]) -> ModelGuess:
    """Guess kind and family from a header returned by :func:`read_safetensors_header`."""
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    kind, family = _kind_and_family(tensors)
    source = "tensors" if family != "unknown" or kind != "unknown" else "none"
    meta = header.get("__metadata__")
    if family == "unknown" and isinstance(meta, Mapping):
        arch = str(meta.get("modelspec.architecture", "")).lower()
        for prefix, meta_family in _ARCH_FAMILY:
            if arch.startswith(prefix):
                family, source = meta_family, "metadata"
                break
    parameters = 0
    dtypes: Counter[str] = Counter()
    for info in tensors.values():
        count = 1
        for dim in _shape(info):
            count *= dim
        parameters += count
        if isinstance(info, Mapping) and isinstance(info.get("dtype"), str):
            dtypes[info["dtype"]] += count
    dtype = dtypes.most_common(1)[0][0] if dtypes else None
    return ModelGuess(kind=kind, family=family, parameters=parameters, dtype=dtype, source=source)


def bytes_per_parameter(dtype: str | None) -> int:
    """Bytes one element of ``dtype`` takes (2 when unknown)."""
    return _DTYPE_BYTES.get(dtype or "", 2)
