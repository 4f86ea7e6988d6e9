"""Panels with reference images: uploads through the orchestrator, ControlNet, IP-Adapter, LoRA."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, RenderRequest
from storycore.manifest import records
from storycore.project import load_project
from tests.engine.conftest import fast_settings, make_project

MODELS = {
    "checkpoints": ["v1-5-pruned-emaonly.safetensors"],
    "loras": ["ink-style.safetensors"],
    "controlnet": ["control_v11p_sd15_canny.pth", "control_v11p_sd15_openpose.pth"],
    "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
    "ipadapter": ["ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.safetensors"],
}


def _image(path: Path, colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)
    return str(path.relative_to(path.parents[2]))


async def test_reference_images_are_uploaded_once_and_bound(tmp_path: Path) -> None:
    root = make_project(tmp_path, 3)
    mara = _image(root / "refs" / "chars" / "mara.png", (200, 120, 90))
    edges = _image(root / "refs" / "ctl" / "edges.png", (10, 10, 10))
    pose = _image(root / "refs" / "ctl" / "pose.png", (0, 0, 200))
    board = json.loads((root / "storyboard.json").read_text())
    for shot in board["shots"][:2]:
        shot["references"] = {
            "characters": [mara],
            "controls": [
                {"kind": "canny", "path": edges, "strength": 0.7, "preprocess": True},
                {"kind": "pose", "path": pose},
            ],
            "loras": [{"name": "ink-style.safetensors", "strength_model": 0.6}],
        }
    (root / "storyboard.json").write_text(json.dumps(board))
    settings = fast_settings(
        **{"ipadapter.model_file": "ip-adapter_sd15.safetensors", "ipadapter.weight": 0.9}
    )
    options = EmulatorOptions(models=MODELS, node_packs=("ipadapter_plus", "controlnet_aux"))
    async with Emulator(options) as emu:
        summary = await ImageEngine(settings).render(RenderRequest(root, backends=(emu.url,)))
        assert summary.counts["rendered"] == 3, summary.to_dict()
        uploaded = sorted(p.name for p in (emu.input_dir / "storycore").iterdir())
        nodes = [
            node
            for prompt_id in emu.executed_prompt_ids
            for node in emu.executor.history[prompt_id]["prompt"][2].values()
        ]
    assert len(uploaded) == 3  # three distinct images, each sent once for two panels
    classes = {node["class_type"] for node in nodes}
    assert {"IPAdapterAdvanced", "ControlNetApplyAdvanced", "LoraLoader", "Canny"} <= classes
    load_images = [n["inputs"]["image"] for n in nodes if n["class_type"] == "LoadImage"]
    assert load_images and all(name.startswith("storycore/") for name in load_images)
    recs = records(load_project(root))
    with_refs = [r for r in recs if r.shot_id in ("shot_01", "shot_02")]
    assert all("ink-style.safetensors" in r.models for r in with_refs)
    assert all("control_v11p_sd15_canny.pth" in r.models for r in with_refs)
    assert all("ip-adapter_sd15.safetensors" in r.models for r in with_refs)


async def test_editing_a_reference_image_invalidates_the_cache(tmp_path: Path) -> None:
    root = make_project(tmp_path, 1)
    mara = _image(root / "refs" / "chars" / "mara.png", (200, 120, 90))
    board = json.loads((root / "storyboard.json").read_text())
    board["shots"][0]["references"] = {"init_image": mara}
    (root / "storyboard.json").write_text(json.dumps(board))
    async with Emulator() as emu:
        first = await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
        same = await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
        _image(root / "refs" / "chars" / "mara.png", (1, 2, 3))  # same path, new content
        edited = await ImageEngine(fast_settings()).render(RenderRequest(root, backends=(emu.url,)))
    assert first.counts["rendered"] == 1
    assert same.counts["skipped"] == 1
    assert edited.counts["rendered"] == 1
