"""Write real safetensors files (header + zero-filled data) for tests, with struct and json."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


def write_safetensors(
    path: Path,
    tensors: Mapping[str, Sequence[int]],
    *,
    dtype: str = "F16",
    metadata: Mapping[str, str] | None = None,
    max_data: int = 4096,
) -> Path:
    """A valid safetensors file whose header lists ``tensors`` (name -> shape).

    The data section is cut to ``max_data`` bytes per tensor so big shapes stay small on disk;
    the offsets in the header still describe a real layout of that (cut) data.
    """
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        nbytes = min(count * _SIZES[dtype], max_data)
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


UNET = "model.diffusion_model."
SD15_CHECKPOINT = {
    f"{UNET}input_blocks.0.0.weight": [320, 4, 3, 3],
    f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
SD2_CHECKPOINT = {
    f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
    "cond_stage_model.model.token_embedding.weight": [49408, 1024],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
SDXL_CHECKPOINT = {
    f"{UNET}label_emb.0.0.weight": [1280, 2816],
    f"{UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": [1, 77],
    "conditioner.embedders.1.model.token_embedding.weight": [49408, 1280],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
SD3_CHECKPOINT = {
    f"{UNET}joint_blocks.0.x_block.attn.qkv.weight": [4608, 1536],
    f"{UNET}x_embedder.proj.weight": [1536, 16, 2, 2],
    "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
    "first_stage_model.decoder.conv_in.weight": [512, 16, 3, 3],
}
FLUX_DEV_UNET = {
    "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
    "single_blocks.0.linear1.weight": [21504, 3072],
    "guidance_in.in_layer.weight": [3072, 256],
    "img_in.weight": [3072, 64],
}
FLUX_SCHNELL_UNET = {k: v for k, v in FLUX_DEV_UNET.items() if not k.startswith("guidance_in")}
SDXL_LORA = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": [8, 2048],
    "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": [5120, 8],
}
SD15_LORA = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [
        4,
        768,
    ],
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": [3072, 4],
}
SD15_CONTROLNET = {
    "control_model.input_hint_block.0.weight": [16, 3, 3, 3],
    "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
}
SD15_IPADAPTER = {
    "image_proj.proj.weight": [3072, 1024],
    "ip_adapter.1.to_k_ip.weight": [320, 768],
}
CLIP_VISION = {
    "vision_model.embeddings.patch_embedding.weight": [1280, 3, 14, 14],
    "vision_model.encoder.layers.0.mlp.fc1.weight": [5120, 1280],
}
VAE = {
    "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
    "decoder.up.0.block.0.conv1.weight": [128, 256, 3, 3],
}
ESRGAN = {"conv_first.weight": [64, 3, 3, 3], "body.0.rdb1.conv1.weight": [32, 64, 3, 3]}
