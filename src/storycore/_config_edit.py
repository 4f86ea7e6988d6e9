"""Adding one entry to a settings file's ``[templates]`` table, keeping the rest as it was.

The file is edited as text: one ``name = "path"`` line is inserted at the end of the
``[templates]`` table (or the table is appended to the file), and every other line, comment and
blank stays byte for byte. The result is parsed again and must hold exactly the old settings
plus the new entry; anything else (a ``templates = { ... }`` inline table, dotted keys, a table
header that is hard to find in text) is refused with the line to add by hand, never written
half-right. No TOML library is needed for this one kind of edit.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from storycore._config_layers import read_toml_text
from storycore._config_text import toml_value
from storycore._fsutil import atomic_write_text
from storycore.errors import ConfigError

__all__ = ["add_template_entry", "planned_entry", "template_entry_text"]

_HEADER = re.compile(r"^\s*\[\s*(?P<name>[^\[\]]+?)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def template_entry_text(name: str, path: str) -> str:
    """The line that registers template ``name``."""
    return f"{toml_value({name: path})[2:-2]}"


def _new_text(text: str, name: str, path: str, newline: str) -> str:
    lines = text.splitlines(keepends=True)
    entry = template_entry_text(name, path) + newline
    header = None
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and match.group("name").strip().strip('"') == "templates":
            header = index
            break
    if header is None:
        tail = "" if not text or text.endswith(("\n", "\r")) else newline
        gap = newline if text.strip() else ""
        return f"{text}{tail}{gap}[templates]{newline}{entry}"
    end = len(lines)
    for index in range(header + 1, len(lines)):
        if _ANY_HEADER.match(lines[index]):
            end = index
            break
    last = header
    for index in range(header + 1, end):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            last = index
    if not lines[last].endswith(("\n", "\r")):
        lines[last] += newline
    lines.insert(last + 1, entry)
    return "".join(lines)


def add_template_entry(
    config: Path, name: str, path: str, *, inside: Path, replace: bool = False
) -> Literal["added", "unchanged"]:
    """Register template ``name`` (binding file ``path``, relative to the project) in the
    settings file ``config`` (created when missing), atomically (:func:`planned_entry`)."""
    new = planned_entry(config, name, path, replace=replace)
    if new is None:
        return "unchanged"
    atomic_write_text(config, new, inside=inside)
    return "added"


def planned_entry(config: Path, name: str, path: str, *, replace: bool = False) -> str | None:
    """The new text of ``config`` with template ``name`` registered, or ``None`` when it
    already is. ``replace`` allows a different entry of that name to be replaced; without it
    that is a ConfigError, as is a file this text editor cannot extend safely."""
    text = ""
    data: dict[str, Any] = {}
    if config.exists():
        text, data = read_toml_text(config)  # one bounded read, checked, with clear errors
    templates = data.get("templates")
    where = f"{config}, [templates]"
    by_hand = f"add this line under [templates] yourself: {template_entry_text(name, path)}"
    if templates is not None and not isinstance(templates, dict):
        raise ConfigError("`templates` is not a table", where=where, hint=by_hand)
    current = (templates or {}).get(name)
    if current == path:
        return None
    if current is not None and not replace:
        raise ConfigError(
            f"a template {name!r} is already registered (file {current!r})",
            where=where,
            hint="choose another --name, or pass --force to replace it",
        )
    newline = "\r\n" if "\r\n" in text else "\n"
    if current is not None:
        pattern = re.compile(rf"^(\s*){re.escape(name)}\s*=.*$", re.MULTILINE)
        new = pattern.sub(lambda m: m.group(1) + template_entry_text(name, path), text, count=1)
    else:
        new = _new_text(text, name, path, newline)
    expected = {**data, "templates": {**(templates or {}), name: path}}
    try:
        parsed = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        parsed = None
    if parsed != expected:
        raise ConfigError(
            "the file's [templates] table could not be extended safely as text (an inline "
            "table, dotted keys, or a layout this editor does not follow)",
            where=where,
            hint=by_hand,
        )
    return new
