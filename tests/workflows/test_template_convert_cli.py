"""``storycore template convert`` in a real child process (tests/security/_support.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from aiohttp import web

from tests.security._support import run_storycore, serve

UI_DIR = Path(__file__).resolve().parents[1] / "data" / "workflows" / "ui"
QWEN = str(UI_DIR / "02_qwen_Image_edit_subgraphed.json")
QWEN_INFO = str(UI_DIR / "qwen_object_info.json")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_server_env() -> dict[str, str]:
    return {"STORYCORE_COMFYUI__HOST": "127.0.0.1", "STORYCORE_COMFYUI__PORT": str(closed_port())}


async def test_prints_the_api_graph_of_a_subgraph_workflow() -> None:
    result = await run_storycore("template", "convert", QWEN, "--object-info", QWEN_INFO)
    assert result.rc == 0, result.output
    graph = json.loads(result.stdout)
    assert graph["141:137"]["class_type"] == "KSampler"
    assert graph["141:137"]["inputs"]["seed"] == 392667428726572
    assert graph["60"]["inputs"]["images"] == ["141:138", 0]
    assert result.stderr == ""


async def test_out_writes_the_file_and_prints_no_graph(tmp_path: Path) -> None:
    target = tmp_path / "qwen.api.json"
    result = await run_storycore(
        "template", "convert", QWEN, "--object-info", QWEN_INFO, "--out", str(target)
    )
    assert result.rc == 0, result.output
    assert result.stdout == ""
    assert "Wrote 16 nodes" in result.stderr
    assert json.loads(target.read_text(encoding="utf-8"))["141:142"]["inputs"]["width"] == [
        "144",
        0,
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["qwen.api.json"]  # no temporary left


async def test_unconvertible_workflow_exits_6_with_one_paragraph() -> None:
    result = await run_storycore(
        "template",
        "convert",
        str(UI_DIR / "subgraph_template_ui.json"),
        "--object-info",
        str(UI_DIR / "subgraph_object_info.json"),
    )
    assert result.rc == 6
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert text.startswith("error: ")
    assert "node 19:3 (6d92985e-3e1e-49e2-acea-91c5259d86a8)" in text
    assert "subgraph_template_ui.json" in text


async def test_a_bad_object_info_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "object_info.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    result = await run_storycore("template", "convert", QWEN, "--object-info", str(bad))
    assert result.rc == 6
    assert "Traceback" not in result.stderr
    assert "not a JSON object of node classes" in result.stderr
    bad.write_text("{nope", encoding="utf-8")
    result = await run_storycore("template", "convert", QWEN, "--object-info", str(bad))
    assert result.rc == 6 and "not valid JSON" in result.stderr


async def test_node_list_from_the_named_backend() -> None:
    info = json.loads(Path(QWEN_INFO).read_text(encoding="utf-8"))
    asked: list[str] = []

    async def object_info(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response(info)

    app = web.Application()
    app.router.add_get("/object_info", object_info)
    async with serve(app) as url:
        result = await run_storycore("template", "convert", QWEN, "--backend", url)
    assert result.rc == 0, result.output
    assert asked == ["/object_info"]
    assert json.loads(result.stdout)["141:131"]["inputs"]["shift"] == 3


async def test_without_a_server_the_shipped_node_list_is_used_with_a_warning() -> None:
    sd15 = str(UI_DIR / "sd15_ui_workflow.json")
    result = await run_storycore("template", "convert", sd15, env=no_server_env())
    assert result.rc == 0, result.output
    assert json.loads(result.stdout)["3"]["inputs"]["steps"] == 20
    warning = " ".join(result.stderr.split())
    assert warning.startswith("warning: no node list from http://127.0.0.1:")
    assert "ComfyUI 0.3.64" in warning


async def test_a_named_backend_that_does_not_answer_is_an_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = await run_storycore("template", "convert", QWEN, "--backend", url)
    assert result.rc == 4
    assert "Traceback" not in result.stderr and url in result.stderr
