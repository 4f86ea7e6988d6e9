"""A tiny stand-in ComfyUI for the manager tests, used only while the emulator is not available.

Run as a script with ComfyUI's flags. It answers ``GET /system_stats`` with the recorded body
(``argv`` replaced by its own), ``GET /prompt`` and ``POST /prompt``. Extra flags, like the
emulator's: ``--startup-delay S`` and ``--crash-after-prompts N`` (exit with code 3 after the
N-th accepted prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from importlib import resources
from typing import Any

from aiohttp import web

# The recorded /system_stats body ships with the emulator (its one copy in the repository).
STATS_FILE = resources.files("storycore.emulator").joinpath("data", "system_stats.json")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--crash-after-prompts", type=int, default=0)
    parser.add_argument("--no-signal-handlers", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    return args


def build_app(args: argparse.Namespace) -> web.Application:
    body: dict[str, Any] = json.loads(STATS_FILE.read_text(encoding="utf-8"))["body"]
    body["system"]["argv"] = ["main.py", *sys.argv[1:]]
    state = {"prompts": 0, "number": 0}

    async def system_stats(_request: web.Request) -> web.Response:
        return web.json_response(body)

    async def get_prompt(_request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": 0}})

    async def post_prompt(request: web.Request) -> web.Response:
        data = await request.json()
        prompt_id = str(data.get("prompt_id") or uuid.uuid4())
        state["prompts"] += 1
        number = state["number"]
        state["number"] += 1
        if args.crash_after_prompts and state["prompts"] >= args.crash_after_prompts:
            print(f"fake: crashing after {state['prompts']} prompt(s)", flush=True)
            asyncio.get_running_loop().call_later(0.05, os._exit, 3)
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    app = web.Application()
    for prefix in ("", "/api"):
        app.router.add_get(prefix + "/system_stats", system_stats)
        app.router.add_get(prefix + "/prompt", get_prompt)
        app.router.add_post(prefix + "/prompt", post_prompt)
    return app


def main() -> None:
    args = _parse(sys.argv[1:])
    print(f"fake ComfyUI: argv {sys.argv[1:]}", flush=True)
    if args.startup_delay:
        time.sleep(args.startup_delay)
    print(f"Starting server\n\nTo see the GUI go to: http://{args.listen}:{args.port}", flush=True)
    web.run_app(
        build_app(args),
        host=args.listen,
        port=args.port,
        print=None,
        handle_signals=not args.no_signal_handlers,
    )


if __name__ == "__main__":
    main()
