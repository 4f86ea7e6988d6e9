"""Odd node ids in what a person or a project supplies: a user template (API or UI format)
and the graph kept in a rendered PNG.

``"²"`` is a digit to :meth:`str.isdigit` but not to :func:`int`, and an id of 5000 digits is
past :func:`int`'s limit (Python 3.11): before, sorting such ids raised ``ValueError`` and
preflight, generate-images and board ended on "unexpected ValueError". Now they are ordinary
ids (sorted as text), and a UI workflow whose link ids are not numbers is a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from storycore.project import load_project, save_project
from tests.board._project import add_render, copy_example
from tests.engine.conftest import make_project
from tests.security._support import ChildResult, hostile_comfyui, run_storycore
from tests.security.test_hostile_http import FAST_ENV

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"
SUPER = "\u00b2"  # SUPERSCRIPT TWO: "²".isdigit() is True, int("²") raises
LONG = "7" * 5000  # int() of more than 4300 digits raises (sys.get_int_max_str_digits)
PROJECT_TOML = '[templates]\nx = "templates/t.binding.toml"\n[render]\ntemplate = "x"\n'


def _clean(result: ChildResult, rc: int, *words: str) -> None:
    result.assert_bounded(seconds=60)
    for bad in ("Traceback", "unexpected"):
        assert bad not in result.output, result.output[-3000:]
    assert result.rc == rc, result.output[-3000:]
    for word in words:
        assert word in result.output, result.output[-3000:]


def _api_workflow() -> dict[str, Any]:
    """A text-to-image graph of core nodes; the sampler is node "²", the output node has an
    id of 5000 digits."""
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "x", "clip": ["4", 1]},
            "_meta": {"title": "Positive"},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry", "clip": ["4", 1]},
            "_meta": {"title": "Negative"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
            "_meta": {"title": "Latent"},
        },
        SUPER: {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "_meta": {"title": "Sampler"},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": [SUPER, 0], "vae": ["4", 2]}},
        LONG: {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "x", "images": ["8", 0]},
        },
    }


def _api_template(root: Path) -> None:
    folder = root / "templates"
    folder.mkdir()
    (folder / "t.api.json").write_text(json.dumps(_api_workflow()), encoding="utf-8")
    (folder / "t.binding.toml").write_text(
        'name = "odd-ids"\nworkflow = "t.api.json"\n[bindings]\nprompt = "Positive.text"\n'
        'negative = "Negative.text"\nseed = "Sampler.seed"\nsteps = "Sampler.steps"\n'
        'width = "Latent.width"\nheight = "Latent.height"\n',
        encoding="utf-8",
    )
    (root / "storycore.toml").write_text(PROJECT_TOML, encoding="utf-8")


def _ui_template(root: Path, rename: dict[int, str], link_ids: dict[int, Any]) -> None:
    """The example SD 1.5 pose workflow (UI format) with node ids ``rename``d and link ids
    replaced (``link_ids``: old link id -> new one)."""
    data = json.loads((EXAMPLES / "sd15_pose.ui.json").read_text(encoding="utf-8"))
    for node in data["nodes"]:
        node["id"] = rename.get(node["id"], node["id"])
        for slot in node.get("inputs") or []:
            slot["link"] = link_ids.get(slot.get("link"), slot.get("link"))
    for link in data["links"]:
        link[1], link[3] = rename.get(link[1], link[1]), rename.get(link[3], link[3])
        link[0] = link_ids.get(link[0], link[0])
    folder = root / "templates"
    folder.mkdir()
    (folder / "t.ui.json").write_text(json.dumps(data), encoding="utf-8")
    binding = json.loads((EXAMPLES / "sd15_pose.binding.json").read_text(encoding="utf-8"))
    binding["workflow"] = "t.ui.json"
    (folder / "t.binding.json").write_text(json.dumps(binding), encoding="utf-8")
    (root / "storycore.toml").write_text(
        PROJECT_TOML.replace("t.binding.toml", "t.binding.json"), encoding="utf-8"
    )


async def _preflight(tmp_path: Path, root: Path) -> ChildResult:
    async with hostile_comfyui({}, tmp=tmp_path) as (url, _emu):
        return await run_storycore(
            "preflight", "--project", str(root), "--backend", url, env=FAST_ENV, limit_s=90
        )


async def test_an_api_template_with_odd_node_ids_is_checked_and_renders(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", 1)
    _api_template(root)
    checked = await _preflight(tmp_path, root)
    _clean(checked, 0, "ready")
    async with hostile_comfyui({}, tmp=tmp_path / "render") as (url, _emu):
        rendered = await run_storycore(
            "generate-images", "--project", str(root), "--backend", url, env=FAST_ENV, limit_s=90
        )
    _clean(rendered, 0)
    assert (root / "assets" / "images" / "generated").is_dir(), rendered.output[-3000:]


async def test_a_ui_template_with_odd_node_ids_is_converted(tmp_path: Path) -> None:
    """Node 3 (the sampler) becomes "²", node 9 (Save Image) an id of 5000 digits."""
    root = make_project(tmp_path / "project", 1)
    _ui_template(root, {3: SUPER, 9: LONG}, {})
    result = await _preflight(tmp_path, root)
    # converted and checked: the report names the workflow's checkpoint, not on the server
    _clean(result, 6, "Preflight against", "'dreamshaper_8.safetensors' is not installed")


async def test_a_ui_template_whose_link_ids_are_not_numbers_is_a_clear_error(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "project", 1)
    _ui_template(root, {}, {1: SUPER, 2: LONG})
    result = await _preflight(tmp_path, root)
    _clean(result, 6, "t.binding.json", "link id in the UI workflow", "not a whole number")


async def test_the_board_reads_a_graph_with_odd_node_ids(tmp_path: Path) -> None:
    """A received project's render carries a graph (the PNG's ``prompt`` text) whose node ids
    are "²" and 5000 digits: the board shows the panel and its details."""
    project = load_project(copy_example(tmp_path))
    record = add_render(project, "shot_01")
    save_project(project)
    graph = _api_workflow()
    graph[SUPER]["inputs"]["seed"] = 4242
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    image = project.root / record.path
    Image.new("RGB", (64, 36), (200, 30, 30)).save(image, format="PNG", pnginfo=info)
    result = await run_storycore("board", "-p", str(project.root), limit_s=60)
    _clean(result, 0)
    page = (project.root / "storyboard" / "board.html").read_text(encoding="utf-8")
    assert "v1-5-pruned-emaonly.safetensors" in page  # read from the graph's loader
