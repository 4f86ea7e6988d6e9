"""``filename_prefix``: where a save node writes, and which ``%...%`` variables expand where.

Two sides expand variables in ComfyUI, and the emulator keeps them apart:

- the server, in ``folder_paths.get_save_image_path`` (ComfyUI folder_paths.py @ a125cd84, the
  recorded 0.3.64, and still so today): ``%width%`` / ``%height%`` (of the first image; 0 for
  latents, audio and video without a size) and ``%year%``, ``%month%``, ``%day%``, ``%hour%``,
  ``%minute%``, ``%second%`` (local time, zero-padded) -- :func:`save_path`;
- the browser, before it queues a prompt (ComfyUI_frontend src/utils/searchAndReplace.ts
  ``applyTextReplacements`` @ 03389bac, with ``formatDate`` of src/utils/formatUtil.ts):
  ``%date:yyyy-MM-dd%`` and ``%Node.widget%`` (a node found by its "Node name for S&R"
  property, else by title; ``/?<>\\:*|"`` and control characters in the value become ``_``).
  A prompt sent by a script reaches the server with these literally, and a real server writes
  them literally, so the emulator does too; :func:`frontend_replacements` does the browser's
  part for an API prompt (S&R name = ``class_type``, title = ``_meta.title``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ._images import next_counter

__all__ = ["expand_server_vars", "format_date", "frontend_replacements", "save_path"]


def expand_server_vars(prefix: str, width: int, height: int, now: time.struct_time) -> str:
    """ComfyUI's ``compute_vars`` (folder_paths.py @ a125cd84)."""
    if "%" not in prefix:
        return prefix
    pairs = (
        ("%width%", str(width)),
        ("%height%", str(height)),
        ("%year%", str(now.tm_year)),
        ("%month%", str(now.tm_mon).zfill(2)),
        ("%day%", str(now.tm_mday).zfill(2)),
        ("%hour%", str(now.tm_hour).zfill(2)),
        ("%minute%", str(now.tm_min).zfill(2)),
        ("%second%", str(now.tm_sec).zfill(2)),
    )
    for key, value in pairs:
        prefix = prefix.replace(key, value)
    return prefix


def save_path(
    root: Path, prefix: str, width: int = 0, height: int = 0
) -> tuple[Path, str, int, str]:
    """(folder, file name stem, first counter, subfolder) like ``get_save_image_path``.

    Raises ComfyUI's exception (its message) when the prefix leads outside ``root``.
    """
    prefix = expand_server_vars(prefix, width, height, time.localtime())
    normalized = os.path.normpath(prefix)
    sub = os.path.dirname(normalized)
    filename = os.path.basename(normalized)
    root_abs = root.resolve()
    folder = (root_abs / sub).resolve() if sub else root_abs
    try:
        folder.relative_to(root_abs)
    except ValueError:
        common = os.path.commonpath((str(root_abs), str(folder)))
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}"
            f"\n         output_dir: {root_abs}"
            f"\n         commonpath: {common}"
        ) from None
    return folder, filename, next_counter(folder, filename), sub


_DATE_TOKEN = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def format_date(fmt: str, now: datetime) -> str:
    """The frontend's ``formatDate``: ``d M h m s`` (1-2 letters, zero-padded), ``yy``,
    ``yyyy``; anything else stays."""
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "yy":
            return str(now.year)[2:]
        if text == "yyyy":
            return str(now.year)
        if text[0] in parts:
            return str(parts[text[0]]).rjust(len(text), "0")
        return text

    return _DATE_TOKEN.sub(one, fmt)


_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


def frontend_replacements(text: str, prompt: Mapping[str, Any], now: datetime | None = None) -> str:
    """What the ComfyUI frontend does to a widget's text before queueing, on an API prompt."""
    stamp = now or datetime.now()

    def one(m: re.Match[str]) -> str:
        inner = m.group(1)
        split = inner.split(".")
        if len(split) != 2:
            if split[0].startswith("date:"):
                return format_date(split[0][5:], stamp)
            return m.group(0)
        nodes = [n for n in prompt.values() if isinstance(n, dict)]
        found = [n for n in nodes if n.get("class_type") == split[0]]
        if not found:
            found = [n for n in nodes if (n.get("_meta") or {}).get("title") == split[0]]
        if not found:
            return m.group(0)
        inputs = found[0].get("inputs") or {}
        if split[1] not in inputs or isinstance(inputs[split[1]], list):
            return m.group(0)  # no such widget (a link is no widget value)
        value = inputs[split[1]]
        shown = "" if value is None else _js_string(value)
        return _UNSAFE.sub("_", shown)

    return re.sub(r"%([^%]+)%", one, text)


def _js_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
