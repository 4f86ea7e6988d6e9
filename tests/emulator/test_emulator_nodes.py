"""Node semantics: Pillow image nodes, placeholders, sampler progress, execution errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator
from storycore.emulator._images import MARK, placeholder

from ._support import collect_until_done, drain


async def _run(
    emu: Emulator, http: aiohttp.ClientSession, prompt: dict[str, Any]
) -> list[dict[str, Any]]:
    async with http.ws_connect(f"{emu.ws_url}?clientId=n") as ws:
        await drain(ws, 0.05)
        resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt, "client_id": "n"})
        assert resp.status == 200, await resp.text()
        return await collect_until_done(ws, (await resp.json())["prompt_id"])


def _saved(emu: Emulator, msgs: list[dict[str, Any]]) -> list[Image.Image]:
    out = []
    for m in msgs:
        if m["type"] == "executed":
            for item in m["data"]["output"]["images"]:
                folder = emu.output_dir if item["type"] == "output" else emu.temp_dir
                with Image.open(folder / item["subfolder"] / item["filename"]) as img:
                    out.append(img.convert("RGB"))
    return out


def _empty(uid: str, w: int, h: int, color: int, batch: int = 1) -> dict[str, Any]:
    return {
        uid: {
            "class_type": "EmptyImage",
            "inputs": {"width": w, "height": h, "batch_size": batch, "color": color},
        }
    }


def _save(uid: str, src: str, prefix: str = "t") -> dict[str, Any]:
    return {
        uid: {"class_type": "SaveImage", "inputs": {"images": [src, 0], "filename_prefix": prefix}}
    }


async def test_image_nodes_have_pillow_semantics(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    prompt = {
        **_empty("1", 40, 20, 0x102030),
        **_empty("2", 10, 10, 0xFFFFFF),
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["3", 0],
                "upscale_method": "nearest-exact",
                "width": 80,
                "height": 0,
                "crop": "disabled",
            },
        },
        "5": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["2", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        **_save("10", "4", "scaled"),
        **_save("11", "5", "blend"),
        **_save("12", "6", "batch"),
    }
    msgs = await _run(emu, http, prompt)
    assert msgs[-3]["type"] == "execution_success"
    with Image.open(emu.output_dir / "scaled_00001_.png") as img:
        assert img.size == (80, 40)
        assert img.convert("RGB").getpixel((3, 3)) == (0xEF, 0xDF, 0xCF)
    with Image.open(emu.output_dir / "blend_00001_.png") as img:
        assert img.size == (40, 20)
        r, _g, b = img.convert("RGB").getpixel((1, 1))
        assert abs(r - (0x10 + 255) / 2) <= 1 and abs(b - (0x30 + 255) / 2) <= 1
    batch = sorted(p.name for p in emu.output_dir.glob("batch_*"))
    assert batch == ["batch_00001_.png", "batch_00002_.png"]
    with Image.open(emu.output_dir / "batch_00002_.png") as img:
        assert img.size == (40, 20)  # image2 resized to image1


async def test_imageblend_batch_mismatch_matches_recorded_error(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    prompt = {
        **_empty("1", 16, 16, 1, batch=2),
        **_empty("2", 16, 16, 2, batch=3),
        "3": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["2", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        **_save("4", "3"),
    }
    msgs = await _run(emu, http, prompt)
    err = next(m["data"] for m in msgs if m["type"] == "execution_error")
    assert err["exception_type"] == "RuntimeError"
    assert err["exception_message"] == (
        "The size of tensor a (2) must match the size of tensor b (3) "
        "at non-singleton dimension 0\n"
    )
    assert err["executed"] == ["2", "1"]  # ComfyUI's staging order, as recorded
    assert list(err) == [
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    ]


def _txt2img(text: str, seed: int, steps: int = 3, w: int = 96, h: int = 64) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": "storycore-style.safetensors",
                "strength_model": 1.0,
                "strength_clip": 1.0,
            },
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": w, "height": h, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "frames/shot", "images": ["8", 0]},
        },
    }


async def test_txt2img_placeholder_and_progress(emu: Emulator, http: aiohttp.ClientSession) -> None:
    msgs = await _run(emu, http, _txt2img("a red fox", seed=7, steps=3))
    progress = [m["data"] for m in msgs if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (1, 3, "3"),
        (2, 3, "3"),
        (3, 3, "3"),
    ]
    executed = next(m["data"] for m in msgs if m["type"] == "executed")
    assert executed["output"] == {
        "images": [{"filename": "shot_00001_.png", "subfolder": "frames", "type": "output"}]
    }
    order = [m["data"]["node"] for m in msgs if m["type"] == "executing" and m["data"]["node"]]
    assert (
        order.index("4")
        < order.index("10")
        < order.index("3")
        < order.index("8")
        < order.index("9")
    )
    [img] = _saved(emu, msgs)
    assert img.size == (96, 64)
    expected = placeholder(96, 64, prompt="a red fox", seed=7, extra=())
    assert img.tobytes() != Image.new("RGB", (96, 64)).tobytes()
    assert expected.size == img.size
    # Deterministic: the same prompt and seed draw the same picture; another seed does not.
    again = await _run(
        emu,
        http,
        {
            **_txt2img("a red fox", seed=7),
            "9": {
                **_txt2img("a", 1)["9"],
                "inputs": {"filename_prefix": "again", "images": ["8", 0]},
            },
        },
    )
    other = await _run(emu, http, _txt2img("a red fox", seed=8))
    assert _saved(emu, again)[0].tobytes() == img.tobytes()
    assert _saved(emu, other)[0].tobytes() != img.tobytes()


def test_placeholder_is_deterministic_and_marked() -> None:
    a = placeholder(320, 200, prompt="hello world", seed=3)
    b = placeholder(320, 200, prompt="hello world", seed=3)
    c = placeholder(320, 200, prompt="hello world", seed=4)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert MARK == "PLACEHOLDER"
    # The mark is drawn in yellow on a black box in the middle.
    raw = a.tobytes()
    pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    yellow = sum(1 for px in pixels if px[0] > 200 and px[1] > 180 and px[2] < 60)
    assert yellow > 20
    tiny = placeholder(4, 4, prompt="x", seed=None)
    assert tiny.size == (4, 4)


async def test_img2img_controlnet_ipadapter_graph_runs(
    tmp_path: Any, http: aiohttp.ClientSession
) -> None:
    from storycore.emulator import EmulatorOptions

    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        node_packs=("ipadapter_plus", "controlnet_aux"),
    )
    (tmp_path / "i").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "i" / "ref.png")
    prompt = _txt2img("a knight", seed=2, steps=2)
    prompt.update(
        {
            "20": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
            "21": {
                "class_type": "CannyEdgePreprocessor",
                "inputs": {
                    "image": ["20", 0],
                    "low_threshold": 100,
                    "high_threshold": 200,
                    "resolution": 512,
                },
            },
            "22": {
                "class_type": "ControlNetLoader",
                "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"},
            },
            "23": {
                "class_type": "ControlNetApplyAdvanced",
                "inputs": {
                    "positive": ["6", 0],
                    "negative": ["7", 0],
                    "control_net": ["22", 0],
                    "image": ["21", 0],
                    "strength": 0.8,
                    "start_percent": 0.0,
                    "end_percent": 1.0,
                },
            },
            "24": {
                "class_type": "IPAdapterModelLoader",
                "inputs": {"ipadapter_file": "ip-adapter_sd15.safetensors"},
            },
            "25": {
                "class_type": "CLIPVisionLoader",
                "inputs": {"clip_name": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"},
            },
            "26": {
                "class_type": "IPAdapterAdvanced",
                "inputs": {
                    "model": ["10", 0],
                    "ipadapter": ["24", 0],
                    "image": ["20", 0],
                    "weight": 0.7,
                    "weight_type": "linear",
                    "combine_embeds": "concat",
                    "start_at": 0.0,
                    "end_at": 1.0,
                    "embeds_scaling": "V only",
                    "clip_vision": ["25", 0],
                },
            },
            "27": {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["4", 2]}},
        }
    )
    prompt["3"]["inputs"].update(
        {
            "positive": ["23", 0],
            "negative": ["23", 1],
            "model": ["26", 0],
            "latent_image": ["27", 0],
            "denoise": 0.6,
        }
    )
    async with Emulator(options) as emu:
        msgs = await _run(emu, http, prompt)
        assert msgs[-3]["type"] == "execution_success", [
            m for m in msgs if m["type"] == "execution_error"
        ]
        [img] = _saved(emu, msgs)
        assert img.size == (64, 48)  # follows the VAEEncode source


@pytest.mark.parametrize("clip_vision", [[], ["clip.safetensors"]])
async def test_ipadapter_unified_loader_needs_clip_vision(
    tmp_path: Any, http: aiohttp.ClientSession, clip_vision: list[str]
) -> None:
    from storycore.emulator import EmulatorOptions

    options = EmulatorOptions(
        output_dir=tmp_path / "o",
        input_dir=tmp_path / "i",
        temp_dir=tmp_path / "t",
        node_packs=("ipadapter_plus",),
        models={
            "checkpoints": ["m.safetensors"],
            "clip_vision": clip_vision,
            "ipadapter": ["ip.safetensors"],
        },
    )
    (tmp_path / "i").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "i" / "ref.png")
    prompt = _txt2img("x", seed=1, steps=1)
    prompt["4"]["inputs"]["ckpt_name"] = "m.safetensors"
    del prompt["10"]
    for uid in ("6", "7"):
        prompt[uid]["inputs"]["clip"] = ["4", 1]
    prompt.update(
        {
            "20": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
            "21": {
                "class_type": "IPAdapterUnifiedLoader",
                "inputs": {"model": ["4", 0], "preset": "STANDARD (medium strength)"},
            },
            "23": {
                "class_type": "IPAdapterAdvanced",
                "inputs": {
                    "model": ["21", 0],
                    "ipadapter": ["21", 1],
                    "image": ["20", 0],
                    "weight": 1.0,
                    "weight_type": "linear",
                    "combine_embeds": "concat",
                    "start_at": 0.0,
                    "end_at": 1.0,
                    "embeds_scaling": "V only",
                },
            },
        }
    )
    prompt["3"]["inputs"]["model"] = ["23", 0]
    async with Emulator(options) as emu:
        msgs = await _run(emu, http, prompt)
    errors = [m["data"] for m in msgs if m["type"] == "execution_error"]
    if clip_vision:
        assert errors == []
    else:
        assert errors[0]["node_type"] == "IPAdapterUnifiedLoader"
        assert errors[0]["exception_message"] == "ClipVision model not found.\n"


async def test_decoded_sizes_round_down_to_multiples_of_8(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    msgs = await _run(emu, http, _txt2img("odd size", seed=1, steps=1, w=100, h=75))
    [img] = _saved(emu, msgs)
    assert img.size == (96, 72)


async def test_more_nodes_and_the_generic_fallback(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    prompt = {
        **_empty("1", 20, 10, 0x808080),
        "2": {
            "class_type": "ImageSharpen",
            "inputs": {"image": ["1", 0], "sharpen_radius": 1, "sigma": 1.0, "alpha": 1.0},
        },
        "3": {
            "class_type": "UpscaleModelLoader",
            "inputs": {"model_name": "RealESRGAN_x4plus.pth"},
        },
        "4": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["3", 0], "image": ["2", 0]},
        },
        "5": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 8, "height": 6}},
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 0]}},
        **_save("10", "4", "up"),
        **_save("11", "6", "mask"),
    }
    msgs = await _run(emu, http, prompt)
    assert msgs[-3]["type"] == "execution_success", msgs
    with Image.open(emu.output_dir / "up_00001_.png") as img:
        assert img.size == (80, 40)
    with Image.open(emu.output_dir / "mask_00001_.png") as img:
        assert img.size == (8, 6)
        assert img.convert("RGB").getpixel((0, 0)) == (128, 128, 128)
