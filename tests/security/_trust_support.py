"""Hostile project folders for the project-trust tests: a received project, a fake ComfyUI
install that leaves a trace when it runs, a PNG with a secret in it, a recording server."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from storycore.project import init_project

SECRET_TEXT = b"TOPSECRET-not-for-any-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def received_project(base: Path, toml: str = "", *, shots: int = 1) -> Path:
    """A project as it arrives from someone else: its own ``storycore.toml`` and ``shots``
    shots of 64 px, 1 step."""
    root = init_project("Received", base)
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text(encoding="utf-8"))
    board["shots"] = board["shots"][:shots]
    for shot in board["shots"]:
        shot["prompt_modules"]["technical"].update(steps=1, resolution="64x64")
    board_path.write_text(json.dumps(board), encoding="utf-8")
    (root / "storycore.toml").write_text(toml, encoding="utf-8")
    return root


def edit_shot(root: Path, **fields: Any) -> None:
    """Set fields of the first shot (``references={...}``, ``template="x"``)."""
    board_path = root / "storyboard.json"
    board = json.loads(board_path.read_text(encoding="utf-8"))
    board["shots"][0].update(fields)
    board_path.write_text(json.dumps(board), encoding="utf-8")


def fake_install(folder: Path, trace: Path) -> Path:
    """A "ComfyUI" whose main.py writes its command line to ``trace`` and exits (a venv
    layout, found by StoryCore's install search)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(
        f"import json, sys\nopen({str(trace)!r}, 'w').write(json.dumps(sys.argv))\nsys.exit(1)\n",
        encoding="utf-8",
    )
    python = folder / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.symlink_to(sys.executable)
    return folder


def shell_script(path: Path, trace: Path) -> Path:
    """An executable that writes ``trace`` when run (posing as a python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho ran > '{trace}'\nexit 1\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def secret_png(path: Path) -> Path:
    """A valid 2x2 PNG that carries :data:`SECRET_TEXT` in a text chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80\x40\x20" * 2 for _ in range(2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + SECRET_TEXT)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )
    return path


def user_config(folder: Path, text: str) -> dict[str, str]:
    """The environment for a child whose user config file holds ``text``."""
    config = folder / "xdg"
    (config / "storycore").mkdir(parents=True, exist_ok=True)
    (config / "storycore" / "config.toml").write_text(text, encoding="utf-8")
    return {"XDG_CONFIG_HOME": str(config)}


class Recorder:
    """A loopback server that answers nothing useful and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Mapping[str, str], bytes]] = []

    def app(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((request.method, request.path, dict(request.headers), body))
            return web.json_response({}, status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


FAST_ENV = {
    "STORYCORE_RENDER__RENDER_LONG_SIDE": "64",
    "STORYCORE_COMFYUI__STARTUP_TIMEOUT": "8",
    "STORYCORE_COMFYUI__CONNECT_TIMEOUT": "2",
    "STORYCORE_COMFYUI__GPU": "false",
}


def child_env(**extra: str) -> dict[str, str]:
    env = dict(FAST_ENV)
    env["STORYCORE_COMFYUI__PORT"] = str(free_port())  # nothing answers there
    env.update(extra)
    return {k: v for k, v in env.items() if v} | {"PATH": os.environ.get("PATH", "")}
