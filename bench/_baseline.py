"""The reference: a minimal sequential client, the way ComfyUI's websocket API example works.

One WebSocket (``/ws?clientId=...``) for the whole run; for each panel: ``POST /prompt``, read
messages until ``executing`` with ``node: null`` for our prompt, ``GET /history/<id>``, then
``GET /view`` for each output image (saved to disk), and only then the next panel. Written for
these benchmarks (no code copied); the graphs are the very ones StoryCore submits.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from storycore.config import Settings
from storycore.engine import graph_options
from storycore.panels import panels_from_project
from storycore.project import load_project
from storycore.workflows import build_panel_graph


def panel_graphs(project_root: Path, settings: Settings) -> list[dict[str, Any]]:
    """The API graphs of every panel of the project, as StoryCore builds them."""
    project = load_project(project_root)
    options = graph_options(settings)
    return [
        dict(build_panel_graph(panel, options).graph)
        for panel in panels_from_project(project, settings, None)
    ]


async def sequential_render(url: str, graphs: list[dict[str, Any]], out_dir: Path) -> int:
    """Render ``graphs`` one after the other into the existing ``out_dir``; returns how many
    images were saved."""
    client_id = uuid.uuid4().hex
    saved = 0
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(url.replace("http", "ws", 1) + f"/ws?clientId={client_id}") as ws,
    ):
        for graph in graphs:
            async with session.post(
                url + "/prompt", json={"prompt": graph, "client_id": client_id}
            ) as r:
                r.raise_for_status()
                prompt_id = (await r.json())["prompt_id"]
            while True:
                msg = await ws.receive(timeout=120)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "executing":
                        body = data.get("data", {})
                        if body.get("node") is None and body.get("prompt_id") == prompt_id:
                            break
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    raise RuntimeError("the WebSocket closed")
            async with session.get(url + f"/history/{prompt_id}") as r:
                entry = (await r.json())[prompt_id]
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    params = {
                        "filename": image["filename"],
                        "subfolder": image["subfolder"],
                        "type": image["type"],
                    }
                    async with session.get(url + "/view", params=params) as r:
                        data = await r.read()
                    (out_dir / f"{saved:05d}_{Path(image['filename']).name}").write_bytes(data)
                    saved += 1
    return saved
