"""``python -m storycore.comfyui.emulator``: accepts ComfyUI's own command-line flags.

A fake ComfyUI install's ``main.py`` can ``exec`` this module with the arguments it got.
Flags ComfyUI knows but the emulator does not need are accepted and ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from storycore.errors import StoryCoreError

from ._emulator import EmulatorOptions, _serve

__all__ = ["main", "parse_args"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m storycore.comfyui.emulator",
        description="A protocol-faithful ComfyUI stand-in (placeholder images, no models).",
    )
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--base-directory", type=Path, default=None)
    p.add_argument("--output-directory", type=Path, default=None)
    p.add_argument("--input-directory", type=Path, default=None)
    p.add_argument("--temp-directory", type=Path, default=None)
    p.add_argument(
        "--preview-method",
        nargs="?",
        const="auto",
        default="none",
        choices=["none", "auto", "latent2rgb", "taesd"],
    )
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--cuda-device", type=int, default=None)
    p.add_argument("--disable-auto-launch", action="store_true")
    p.add_argument("--auto-launch", action="store_true")
    p.add_argument("--log-stdout", action="store_true")
    # Emulator knobs.
    p.add_argument("--step-seconds", type=float, default=0.0, help="emulated time per sampler step")
    p.add_argument("--node-seconds", type=float, default=0.0, help="emulated time per other node")
    p.add_argument("--startup-delay", type=float, default=0.0, help="seconds before listening")
    p.add_argument("--node-packs", default="", help="comma list: ipadapter_plus,controlnet_aux")
    p.add_argument(
        "--mark-placeholders",
        action="store_true",
        help="say in /system_stats that frames are placeholders (the mock backend)",
    )
    p.add_argument("--crash-after-prompts", type=int, default=None, help="exit hard mid-job")
    return p


def parse_args(argv: Sequence[str]) -> tuple[EmulatorOptions, str, int, int | None]:
    args = _parser().parse_known_args(list(argv))[0]
    host = str(args.listen).split(",")[0] or "127.0.0.1"
    packs = tuple(p.strip() for p in str(args.node_packs).split(",") if p.strip())
    # Like ComfyUI, the folders default to output/, input/ and temp/ in the base directory.
    base = args.base_directory or Path.cwd()
    options = EmulatorOptions(
        output_dir=args.output_directory or base / "output",
        input_dir=args.input_directory or base / "input",
        temp_dir=args.temp_directory or base / "temp",
        step_seconds=args.step_seconds,
        node_seconds=args.node_seconds,
        startup_delay=args.startup_delay,
        node_packs=packs,
        preview_method=args.preview_method,
        mark_placeholders=args.mark_placeholders,
    )
    return options, host, int(args.port), args.crash_after_prompts


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options, host, port, crash_after = parse_args(args)
    stream = sys.stdout if "--log-stdout" in args else sys.stderr
    try:
        asyncio.run(_serve(options, host, port, crash_after, stream))
    except KeyboardInterrupt:
        return 130
    except StoryCoreError as err:
        # A process entry point: say what went wrong in one line, like ComfyUI's own log.
        logging.getLogger("storycore.comfyui.emulator").addHandler(logging.StreamHandler(stream))
        logging.getLogger("storycore.comfyui.emulator").error("%s", err.paragraph())
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
