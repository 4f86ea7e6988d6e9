"""Shared helpers for the workflow tests: recordings, model lists, panels, golden files."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from storycore.panels import Panel
from storycore.workflows import NodeCatalog
from tests._recordings import load_reference_json

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
EXAMPLES_DIR = REPO_ROOT / "examples" / "templates"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

# What GET /models/{folder} would list on a server with the models the graphs use.
MODELS: dict[str, list[str]] = {
    "checkpoints": ["sd15.safetensors", "sd_xl_base_1.0.safetensors", "dreamshaper_8.safetensors"],
    "loras": ["ink_style.safetensors", "film_grain.safetensors"],
    "vae": ["vae-ft-mse-840000-ema-pruned.safetensors"],
    "controlnet": [
        "control_v11p_sd15_openpose.pth",
        "control_v11f1p_sd15_depth.pth",
        "control_v11p_sd15_lineart.pth",
        "control_v11p_sd15_canny.pth",
    ],
    "ipadapter": ["ip-adapter_sd15.safetensors", "ip-adapter-plus_sdxl_vit-h.safetensors"],
    "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
}


@cache
def object_info_all() -> dict[str, Any]:
    """Core classes plus the two recorded custom node packs."""
    info: dict[str, Any] = dict(load_reference_json("object_info.json"))
    info.update(load_reference_json("object_info_custom_nodes.json"))
    return info


@cache
def catalog_all() -> NodeCatalog:
    return NodeCatalog(object_info_all())


@cache
def catalog_core() -> NodeCatalog:
    return NodeCatalog(load_reference_json("object_info.json"))


BASE_PANEL = Panel(
    project_id="lighthouse",
    shot_id="s010",
    shot_number=10,
    version=1,
    title="Keeper climbs the stairs",
    positive="a lighthouse keeper climbing a spiral staircase, ink storyboard frame",
    negative="blurry, text, watermark",
    width=768,
    height=512,
    seed=1234567,
    seed_source="shot",
    steps=24,
    cfg=6.5,
    sampler="dpmpp_2m",
    scheduler="karras",
    checkpoint="sd15.safetensors",
)


def panel(**changes: Any) -> Panel:
    return replace(BASE_PANEL, **changes)


def check_golden(name: str, data: Any) -> None:
    """Compare ``data`` with ``golden/<name>.json``; rewrite it with UPDATE_GOLDEN=1."""
    path = GOLDEN_DIR / f"{name}.json"
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE_GOLDEN or not path.exists():
        if not UPDATE_GOLDEN:
            raise AssertionError(f"golden file {path} missing; run with UPDATE_GOLDEN=1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name}: graph differs from {path}"
