"""``python -m storycore.emulator``: accepts ComfyUI's own command-line flags.

A fake ComfyUI install's ``main.py`` can ``exec`` this module with the arguments it got.
Flags ComfyUI knows but the emulator does not need are accepted and ignored.

Folders: those given (``--output-directory``, ``--input-directory``, ``--temp-directory``) are
used; the others go in ``--base-directory`` when given, as in ComfyUI. Without one, a run by
hand (``python -m storycore.emulator``) puts them in a temporary folder removed on exit,
so nothing is left in the current folder; started through a ComfyUI install's ``main.py`` (a
script, not ``-m``) it keeps ComfyUI's layout: ``output/``, ``input/`` and ``temp/`` in the
current folder.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from storycore.errors import StoryCoreError

from ._emulator import PROFILES, EmulatorOptions, _serve, describe_folders, emulator_folders

__all__ = ["main", "parse_args", "started_by_hand"]

_PACKAGE = "storycore.emulator"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m storycore.emulator",
        description="A protocol-faithful ComfyUI stand-in (placeholder images, no models).",
    )
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--base-directory", type=Path, default=None)
    p.add_argument("--output-directory", type=Path, default=None)
    p.add_argument("--input-directory", type=Path, default=None)
    p.add_argument("--temp-directory", type=Path, default=None)
    p.add_argument(
        "--models-directory",
        type=Path,
        default=None,
        help="model lists from DIR/<folder>/ (default: models/ in --base-directory, if given)",
    )
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
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="current",
        help="which ComfyUI generation to play: the recorded 0.3.64 or the current source",
    )
    p.add_argument("--crash-after-prompts", type=int, default=None, help="exit hard mid-job")
    return p


def started_by_hand(orig_argv: Sequence[str] | None = None) -> bool:
    """True when the interpreter was started as ``python [options] -m storycore.emulator``
    (rather than on a ComfyUI install's ``main.py`` that runs this module)."""
    argv = list(sys.orig_argv if orig_argv is None else orig_argv)[1:]
    takes_value = {"-W", "-X", "--check-hash-based-pycs"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return i + 1 < len(argv) and argv[i + 1].startswith(_PACKAGE)
        if arg.startswith("-m"):
            return arg[2:].startswith(_PACKAGE)
        if arg == "-c" or arg == "-" or not arg.startswith("-"):
            return False  # code or a script (a ComfyUI main.py)
        i += 2 if arg in takes_value else 1
    return False


def parse_args(
    argv: Sequence[str], *, scratch_default: bool = False
) -> tuple[EmulatorOptions, str, int, int | None]:
    """Options, host, port and ``--crash-after-prompts`` from ComfyUI-style flags.

    A folder not given defaults, like ComfyUI's, to ``output/``, ``input/`` or ``temp/`` in the
    base directory (``--base-directory``, else the current folder); with ``scratch_default`` and
    no ``--base-directory`` it is left ``None`` (for :func:`emulator_folders` to fill in).
    """
    args = _parser().parse_known_args(list(argv))[0]
    host = str(args.listen).split(",")[0] or "127.0.0.1"
    packs = tuple(p.strip() for p in str(args.node_packs).split(",") if p.strip())
    base: Path | None = args.base_directory
    if base is None and not scratch_default:
        base = Path.cwd()

    def folder(given: Path | None, name: str) -> Path | None:
        return given or (base / name if base is not None else None)

    options = EmulatorOptions(
        output_dir=folder(args.output_directory, "output"),
        input_dir=folder(args.input_directory, "input"),
        temp_dir=folder(args.temp_directory, "temp"),
        models_dir=args.models_directory
        or (args.base_directory / "models" if args.base_directory is not None else None),
        step_seconds=args.step_seconds,
        node_seconds=args.node_seconds,
        startup_delay=args.startup_delay,
        node_packs=packs,
        preview_method=args.preview_method,
        mark_placeholders=args.mark_placeholders,
        profile=args.profile,
    )
    return options, host, int(args.port), args.crash_after_prompts


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options, host, port, crash_after = parse_args(args, scratch_default=started_by_hand())
    stream = sys.stdout if "--log-stdout" in args else sys.stderr
    try:
        with emulator_folders(options) as (ready, scratch):
            banner = [describe_folders(ready, scratch)]
            asyncio.run(_serve(ready, host, port, crash_after, stream, banner=banner))
    except KeyboardInterrupt:
        return 130
    except StoryCoreError as err:
        # A process entry point: say what went wrong in one line, like ComfyUI's own log.
        logging.getLogger("storycore.emulator").addHandler(logging.StreamHandler(stream))
        logging.getLogger("storycore.emulator").error("%s", err.paragraph())
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
