"""Projects rendered for real: the engine against the emulator on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from storycore.emulator import Emulator, EmulatorOptions
from storycore.engine import ImageEngine, RenderRequest
from tests.engine.conftest import fast_settings, make_project

MODELS = {
    "checkpoints": ["v1-5-pruned-emaonly.safetensors"],
    "loras": ["ink-style.safetensors"],
    "controlnet": ["control_v11p_sd15_canny.pth"],
    "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
    "ipadapter": ["ip-adapter_sd15.safetensors"],
}
SETTINGS = {"ipadapter.model_file": "ip-adapter_sd15.safetensors"}


def _image(path: Path, colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)
    return path.relative_to(path.parents[2]).as_posix()


async def rendered_project(tmp_path: Path) -> Path:
    """Three shots rendered by the engine against the emulator; shot_01 with a character
    reference (IP-Adapter), a Canny ControlNet guide and a LoRA."""
    root = make_project(tmp_path, 3)
    mara = _image(root / "refs" / "chars" / "mara.png", (200, 120, 90))
    edges = _image(root / "refs" / "ctl" / "edges.png", (10, 10, 10))
    board = json.loads((root / "storyboard.json").read_text())
    shot = board["shots"][0]
    shot["references"] = {
        "characters": [mara],
        "controls": [{"kind": "canny", "path": edges, "strength": 0.7}],
        "loras": [{"name": "ink-style.safetensors", "strength_model": 0.6}],
    }
    shot["prompt_modules"]["subject"] = 'Mara & the <lamp> "keeper"'
    shot["prompt_modules"]["technical"].update(
        negative_prompt="blurry, <b>text</b>", steps=5, cfg_scale=6.5
    )
    (root / "storyboard.json").write_text(json.dumps(board))
    options = EmulatorOptions(models=MODELS, node_packs=("ipadapter_plus", "controlnet_aux"))
    async with Emulator(options) as emu:
        summary = await ImageEngine(fast_settings(**SETTINGS)).render(
            RenderRequest(root, backends=(emu.url,))
        )
    assert summary.counts["rendered"] == 3, summary.to_dict()
    return root
