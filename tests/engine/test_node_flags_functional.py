"""A render against a server whose ``/object_info`` marks node classes ``deprecated`` or
``api_node`` (the recorded 0.3.64 answer already does: ControlNetApply is deprecated, the
OpenAI/Ideogram nodes are API nodes; today's server.py @ 5e14d797 node_info sends the same
fields). A deprecated class is one warning line during the render; a paid API node is refused
before anything is submitted, unless the user (never a project) set comfyui.allow_api_nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storycore.emulator import Emulator, EmulatorOptions
from tests.engine.conftest import make_project
from tests.security._support import run_storycore

POSITIVE = {"class_type": "CLIPTextEncode", "_meta": {"title": "Positive"}}

# An SD1.5 graph whose positive prompt goes through the deprecated ControlNetApply.
DEPRECATED_GRAPH: dict[str, Any] = {
    "1": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    },
    "2": {**POSITIVE, "inputs": {"text": "a lighthouse", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {
        "class_type": "ControlNetLoader",
        "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"},
    },
    "5": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "6": {
        "class_type": "ControlNetApply",
        "_meta": {"title": "Old edge guide"},
        "inputs": {
            "conditioning": ["2", 0],
            "control_net": ["4", 0],
            "image": ["5", 0],
            "strength": 0.5,
        },
    },
    "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "8": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["6", 0],
            "negative": ["3", 0],
            "latent_image": ["7", 0],
            "seed": 1,
            "steps": 2,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}},
}

# A graph that calls a paid online service (billed to the user's comfy.org account).
PAID_GRAPH: dict[str, Any] = {
    "1": {
        "class_type": "OpenAIDalle3",
        "_meta": {"title": "Dalle"},
        "inputs": {"prompt": "a lighthouse", "seed": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


def _with_template(base: Path, graph: dict[str, Any], prompt: str, shots: int = 2) -> Path:
    root = make_project(base, shots)
    folder = root / "templates"
    folder.mkdir()
    (folder / "t.api.json").write_text(json.dumps(graph))
    (folder / "t.binding.toml").write_text(
        f'workflow = "t.api.json"\n[bindings]\nprompt = "{prompt}"\n'
    )
    (root / "storycore.toml").write_text(
        '[templates]\nt = "templates/t.binding.toml"\n[render]\ntemplate = "t"\n'
    )
    return root


def _options(tmp_path: Path) -> EmulatorOptions:
    return EmulatorOptions(
        output_dir=tmp_path / "out", input_dir=tmp_path / "in", profile="current"
    )


async def test_a_deprecated_node_class_is_one_warning_and_the_board_renders(tmp_path: Path) -> None:
    root = _with_template(tmp_path, DEPRECATED_GRAPH, "Positive.text")
    async with Emulator(_options(tmp_path)) as emu:
        result = await run_storycore("generate-images", "-p", str(root), "--backend", emu.url)
    assert result.rc == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "is deprecated" in line]
    assert len(lines) == 1, result.stderr  # one line for the class, not one per shot
    assert "ControlNetApply" in lines[0] and "2 shots: shot_01, shot_02" in lines[0]
    assert len(list((root / "assets" / "images" / "generated").rglob("*.png"))) == 2


async def test_a_paid_api_node_is_refused_before_submission(tmp_path: Path) -> None:
    root = _with_template(tmp_path, PAID_GRAPH, "Dalle.prompt", shots=1)
    async with Emulator(_options(tmp_path)) as emu:
        refused = await run_storycore("generate-images", "-p", str(root), "--backend", emu.url)
        submitted = list(emu.executed_prompt_ids)
        assert refused.rc == 8, refused.output
        assert "paid" in refused.stderr and "allow_api_nodes" in refused.stderr
        assert "OpenAIDalle3" in refused.stderr and "Dalle" in refused.stderr
        assert submitted == []  # nothing reached the server

        # The user opts in (environment or user config): the node is no longer refused.
        allowed = await run_storycore(
            "generate-images",
            "-p",
            str(root),
            "--backend",
            emu.url,
            env={"STORYCORE_COMFYUI__ALLOW_API_NODES": "true"},
        )
    assert "allow_api_nodes" not in allowed.stderr, allowed.output
    assert len(emu.executed_prompt_ids) == 1, allowed.output


async def test_a_project_cannot_allow_paid_api_nodes(tmp_path: Path) -> None:
    root = _with_template(tmp_path, PAID_GRAPH, "Dalle.prompt", shots=1)
    toml = root / "storycore.toml"
    toml.write_text(toml.read_text() + "[comfyui]\nallow_api_nodes = true\n")
    async with Emulator(_options(tmp_path)) as emu:
        result = await run_storycore("generate-images", "-p", str(root), "--backend", emu.url)
        assert emu.executed_prompt_ids == []
    assert result.rc == 2, result.output
    assert "comfyui.allow_api_nodes" in result.stderr and str(toml) in result.stderr
