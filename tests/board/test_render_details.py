"""Reading what a render was made with from its PNG's text chunks and graph (pure parts)."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin

from storycore.review._render_details import (
    ModelUse,
    RenderDetails,
    changes,
    planned,
    read_png_texts,
    render_details,
)


def _png(texts: dict[str, str], *, compressed: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if compressed:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def test_text_chunks_are_read_plain_compressed_and_from_a_file(tmp_path: Path) -> None:
    texts = {"prompt": '{"1": {}}', "storycore": '{"positive": "café ☕"}', "workflow": "big"}
    plain = _png({k: v for k, v in texts.items() if k != "storycore"})
    assert read_png_texts(plain) == {"prompt": '{"1": {}}'}  # "workflow" is not wanted
    assert read_png_texts(_png(texts, compressed=True)) == {
        "prompt": '{"1": {}}',
        "storycore": '{"positive": "café ☕"}',
    }
    path = tmp_path / "x.png"
    path.write_bytes(plain)
    assert read_png_texts(path) == {"prompt": '{"1": {}}'}
    assert read_png_texts(tmp_path / "missing.png") == {}
    assert read_png_texts(b"GIF89a not a png") == {}


def test_only_chunks_before_the_image_data_are_read_and_bombs_are_refused() -> None:
    data = _png({})
    idat = data.index(b"IDAT") - 4
    bomb = _chunk(b"zTXt", b"prompt\0\0" + zlib.compress(b"x" * (8 * 1024 * 1024)))
    late = _chunk(b"tEXt", b"storycore\0{}")
    assert read_png_texts(data[:idat] + bomb + data[idat:]) == {}  # inflates past the limit
    end = data.index(b"IEND") - 4
    assert read_png_texts(data[:end] + late + data[end:]) == {}  # after IDAT: not looked at
    truncated = data[:idat] + _chunk(b"tEXt", b"prompt\0" + b"{" * 100)[:40]
    assert read_png_texts(truncated) == {}


def test_sampler_settings_models_and_prompts_come_from_the_graph() -> None:
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8, "strength_clip": 1},
        },
        "11": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "b.safetensors"}},
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": "vae.pt"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["10", 1]}},
        "20": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.pth"}},
        "21": {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {"positive": ["6", 0], "negative": ["7", 0], "control_net": ["20", 0]},
        },
        "30": {"class_type": "IPAdapterUnifiedLoader", "inputs": {"preset": "PLUS (high)"}},
        "31": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit-h.safetensors"}},
        "40": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 576}},
        "3": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "noise_seed": 77,
                "steps": 30,
                "cfg": 5.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "positive": ["21", 0],
                "negative": ["21", 1],
            },
        },
    }
    details = render_details({"prompt": json.dumps(graph)})
    assert (details.positive, details.negative) == ("a cat", "ugly")  # through the ControlNet
    assert (details.steps, details.cfg, details.sampler, details.scheduler) == (
        30,
        5.5,
        "dpmpp_2m",
        "karras",
    )
    assert (details.seed, details.width, details.height) == (77, 1024, 576)
    assert details.workflow and details.samplers == 1
    assert details.models == (
        ModelUse("Checkpoint", "sdxl.safetensors"),
        ModelUse("VAE", "vae.pt"),
        ModelUse("LoRA", "ink.safetensors", "strength 0.8 / 1 (model / clip)"),
        ModelUse("LoRA", "b.safetensors"),
        ModelUse("ControlNet", "canny.pth"),
        ModelUse("IP-Adapter", "preset: PLUS (high)"),
        ModelUse("CLIP vision", "vit-h.safetensors"),
    )
    # StoryCore's own provenance and the manifest record win over the graph
    ours = {"positive": "as bound", "negative": "", "seed": 5}
    mixed = render_details(
        {"prompt": json.dumps(graph), "storycore": json.dumps(ours)}, seed=9, size=(768, 432)
    )
    assert (mixed.positive, mixed.negative, mixed.seed) == ("as bound", "", 9)
    assert (mixed.width, mixed.height) == (768, 432)
    assert RenderDetails.from_json(mixed.to_json()) == mixed
    assert RenderDetails.from_json('[0, {"steps": 1}]') is None  # another format: read again


def test_without_a_graph_the_record_names_the_models() -> None:
    details = render_details({}, checkpoint="v15.ckpt", models=["v15.ckpt", "ink.safetensors"])
    assert not details.workflow and details.steps is None
    assert details.models == (
        ModelUse("Checkpoint", "v15.ckpt"),
        ModelUse("Model", "ink.safetensors"),
    )
    hostile = render_details({"prompt": "[1, 2]", "storycore": "{not json"})
    assert hostile == RenderDetails()


def test_changes_name_only_what_both_sides_know() -> None:
    shot = {
        "shot_id": "s1",
        "version": "v2",
        "prompt_modules": {"subject": "a cat", "technical": {"steps": 30, "cfg_scale": 7}},
    }
    plan = planned(shot, {})
    assert plan is not None and plan.positive == "a cat" and plan.version == 2
    rendered = RenderDetails(positive="a dog", steps=20, cfg=7.0, sampler="euler", workflow=True)
    found = changes(rendered, plan, version=1, checkpoint="x", own_graph=True)
    assert found == {"version": "v2", "prompt": "a cat", "steps": "30"}
    same = RenderDetails(positive="a cat", steps=30, cfg=7.0, workflow=True)
    assert changes(same, plan, version=2, checkpoint=None, own_graph=True) == {}
    # a user template's own LoRAs are not the storyboard's business
    with_lora = RenderDetails(positive="a cat", models=(ModelUse("LoRA", "t.safetensors"),))
    with_lora = RenderDetails(**{**with_lora.__dict__, "workflow": True})
    assert changes(with_lora, plan, version=2, checkpoint=None, own_graph=False) == {}
    assert changes(with_lora, plan, version=2, checkpoint=None, own_graph=True) == {"LoRAs": "none"}
    assert planned({"shot_id": "bad id with spaces"}, {}) is None
