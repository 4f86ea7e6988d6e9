"""Uploads, ``/view`` and saved files, against ``upload.json``, ``view.json`` and friends."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from PIL import Image

from storycore.emulator import Emulator

from ._support import collect_until_done, drain, load_reference_json, trivial_prompt


def _png(
    color: tuple[int, int, int], size: tuple[int, int] = (24, 16), alpha: bool = False
) -> bytes:
    img = Image.new("RGBA" if alpha else "RGB", size, (*color, 128) if alpha else color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def _upload(
    http: aiohttp.ClientSession, url: str, filename: str, data: bytes, fields: dict[str, str]
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return await http.post(f"{url}/upload/image", data=form)


async def test_upload_sequence_matches_recording(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    rec = load_reference_json("upload.json")
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    steps = [
        ("1_overwrite_subfolder", red),
        ("2_same_name_same_bytes_no_overwrite", red),
        ("3_same_name_other_bytes_no_overwrite", blue),
        ("4_same_name_other_bytes_overwrite_true", blue),
        ("5_top_level_no_type", red),
        ("6_type_temp", red),
        ("7_type_output", red),
        ("8_traversal_subfolder", red),
        ("11_api_prefix", red),
    ]
    for key, data in steps:
        case = rec[key]
        url = emu.url + ("/api" if key.startswith("11") else "")
        resp = await _upload(http, url, case["filename"], data, case["fields"])
        assert resp.status == case["status"], key
        if case["status"] == 200:
            assert resp.headers["Content-Type"] == case["content_type"]
            assert await resp.json() == case["body"], key
        else:
            assert await resp.read() == b""
    assert (emu.input_dir / "storycore" / "storycore_upload.png").read_bytes() == blue
    assert (emu.input_dir / "storycore" / "storycore_upload (1).png").read_bytes() == blue
    assert (emu.temp_dir / "storycore_tmp.png").is_file()
    assert (emu.output_dir / "storycore_out.png").is_file()
    # No image field at all.
    form = aiohttp.FormData()
    form.add_field("overwrite", "true")
    resp = await http.post(f"{emu.url}/upload/image", data=form)
    assert resp.status == rec["10_no_image_field"]["status"]


async def test_raw_traversal_filename_is_refused(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    resp = await _upload(http, emu.url, "../../storycore_evil.png", _png((1, 2, 3)), {})
    assert resp.status == 400
    assert not (emu.input_dir.parent / "storycore_evil.png").exists()


async def test_uploaded_images_feed_loadimage(emu: Emulator, http: aiohttp.ClientSession) -> None:
    await _upload(
        http, emu.url, "up.png", _png((10, 200, 30)), {"subfolder": "storycore", "overwrite": "1"}
    )
    await _upload(http, emu.url, "tmp.png", _png((10, 20, 30)), {"type": "temp"})
    info = await (await http.get(f"{emu.url}/object_info/LoadImage")).json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == []  # only top-level files listed
    await _upload(http, emu.url, "top.png", _png((90, 90, 90), alpha=True), {})
    info = await (await http.get(f"{emu.url}/object_info/LoadImage")).json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["top.png"]
    async with http.ws_connect(f"{emu.ws_url}?clientId=l") as ws:
        await drain(ws, 0.05)
        for name in ("storycore/up.png", "tmp.png [temp]", "top.png"):
            prompt = {
                "1": {"class_type": "LoadImage", "inputs": {"image": name}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": "loaded"},
                },
            }
            resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt, "client_id": "l"})
            assert resp.status == 200, await resp.text()
            pid = (await resp.json())["prompt_id"]
            msgs = await collect_until_done(ws, pid)
            assert msgs[-3]["type"] == "execution_success", msgs
    with Image.open(emu.output_dir / "loaded_00001_.png") as img:
        assert img.size == (24, 16)
        assert img.getpixel((0, 0)) == (245, 55, 225)  # inverted (10, 200, 30)


async def _save_one(
    emu: Emulator, http: aiohttp.ClientSession, prompt: dict[str, Any]
) -> dict[str, Any]:
    async with http.ws_connect(f"{emu.ws_url}?clientId=v") as ws:
        await drain(ws, 0.05)
        resp = await http.post(f"{emu.url}/prompt", json={"prompt": prompt, "client_id": "v"})
        pid = (await resp.json())["prompt_id"]
        await collect_until_done(ws, pid)
    return dict(emu.executor.history[pid]["outputs"])


async def test_view_cases_match_recording(emu: Emulator, http: aiohttp.ClientSession) -> None:
    rec = load_reference_json("view.json")
    outputs = await _save_one(emu, http, trivial_prompt("storycore_custom", size=32))
    ours = outputs["2"]["images"][0]["filename"]
    recorded_name = rec["using_image"]["filename"]
    for key, case in rec.items():
        if key in ("using_image", "HEAD ok"):
            continue
        path = case["path"].replace(recorded_name, ours)
        resp = await http.get(emu.url + path)
        assert resp.status == case["status"], key
        body = await resp.read()
        if case["status"] == 200:
            assert resp.headers["Content-Type"] == case["headers"]["Content-Type"], key
            assert resp.headers["Content-Disposition"] == f'filename="{ours}"'
            assert body[:4].hex() == case["body_first8_hex"][:8], key
        else:
            assert body == b""
    head = await http.head(f"{emu.url}/view?filename={ours}&type=output")
    assert head.status == 200
    assert head.headers["Content-Type"] == "image/png"


async def test_preview_and_subfolder_outputs(emu: Emulator, http: aiohttp.ClientSession) -> None:
    rec = load_reference_json("previewimage_and_subfolder_outputs.json")
    outputs = await _save_one(emu, http, rec["prompt"])
    assert set(outputs) == set(rec["outputs"])
    saved = outputs["3"]["images"]
    assert saved == rec["outputs"]["3"]["images"]
    temp = outputs["2"]["images"]
    assert [t["type"] for t in temp] == ["temp", "temp"]
    assert all(
        t["filename"].startswith("ComfyUI_temp_") and t["filename"].endswith("_.png") for t in temp
    )
    for item in [*temp, *saved]:
        q = f"filename={item['filename']}&subfolder={item['subfolder']}&type={item['type']}"
        resp = await http.get(f"{emu.url}/view?{q}")
        assert resp.status == 200
        with Image.open(io.BytesIO(await resp.read())) as img:
            assert img.size == (128, 128)
            assert img.getpixel((5, 5)) == (0xAB, 0xCD, 0xEF)


async def test_png_text_chunks_like_comfyui(emu: Emulator, http: aiohttp.ClientSession) -> None:
    rec = load_reference_json("custom_prompt_id.json")
    request_prompt = rec["history"]["storycore-75e177939d7a"]["prompt"][2]
    extra = rec["history"]["storycore-75e177939d7a"]["prompt"][3]
    resp = await http.post(
        f"{emu.url}/prompt",
        json={"prompt": request_prompt, "extra_data": {"extra_pnginfo": extra["extra_pnginfo"]}},
    )
    pid = (await resp.json())["prompt_id"]
    for _ in range(500):
        if pid in emu.executor.history:
            break
        await asyncio.sleep(0.01)
    name = emu.executor.history[pid]["outputs"]["2"]["images"][0]["filename"]
    with Image.open(emu.output_dir / name) as img:
        texts = {k: json.loads(v) for k, v in img.text.items()}  # type: ignore[attr-defined]
    assert texts == rec["png_text_chunks"]


@pytest.mark.parametrize("prefix", ["../evil", "/abs/evil"])
async def test_save_outside_output_is_an_execution_error(
    emu: Emulator, http: aiohttp.ClientSession, prefix: str
) -> None:
    async with http.ws_connect(f"{emu.ws_url}?clientId=e") as ws:
        await drain(ws, 0.05)
        resp = await http.post(
            f"{emu.url}/prompt", json={"prompt": trivial_prompt(prefix), "client_id": "e"}
        )
        pid = (await resp.json())["prompt_id"]
        msgs = await collect_until_done(ws, pid)
    err = next(m["data"] for m in msgs if m["type"] == "execution_error")
    assert err["node_type"] == "SaveImage"
    assert err["exception_type"] == "Exception"
    assert err["exception_message"].startswith(
        "**** ERROR: Saving image outside the output folder is not allowed."
    )
    assert err["executed"] == ["1"]
    assert isinstance(err["traceback"], list)
    assert emu.executor.history[pid]["outputs"] == {}


async def test_upload_mask_paints_alpha_onto_original(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    rec = load_reference_json("upload.json")["upload_mask"]
    await _upload(http, emu.url, "orig.png", _png((10, 20, 30)), {"overwrite": "1"})
    form = aiohttp.FormData()
    form.add_field("image", _png((0, 0, 0), alpha=True), filename="storycore_mask.png")
    form.add_field("subfolder", "storycore")
    form.add_field(
        "original_ref", json.dumps({"filename": "orig.png", "type": "input", "subfolder": ""})
    )
    resp = await http.post(f"{emu.url}/upload/mask", data=form)
    assert resp.status == rec["status"]
    assert await resp.json() == rec["body"]
    with Image.open(emu.input_dir / "storycore" / "storycore_mask.png") as img:
        assert img.mode == "RGBA"
        assert img.getpixel((0, 0)) == (10, 20, 30, 128)


async def test_loadimage_lists_only_top_level_images(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    emu.input_dir.mkdir(parents=True, exist_ok=True)
    (emu.input_dir / "notes.txt").write_text("not a picture")
    (emu.input_dir / "b.png").write_bytes(_png((1, 1, 1)))
    (emu.input_dir / "a.jpg").write_bytes(b"whatever")
    (emu.input_dir / "sub").mkdir()
    (emu.input_dir / "sub" / "c.png").write_bytes(_png((2, 2, 2)))
    info = await (await http.get(f"{emu.url}/object_info/LoadImage")).json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["a.jpg", "b.png"]
