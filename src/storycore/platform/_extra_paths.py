"""Read ComfyUI's ``extra_model_paths.yaml`` without a YAML library.

ComfyUI's file is a small subset of YAML: top-level sections, each a mapping of ``key: value``
where a value is a path, a boolean, or a ``|`` block of one path per line; ``#`` comments.
That subset is parsed here; anything outside it raises :class:`ConfigError` naming the line.
Paths resolve the way ComfyUI resolves them: ``base_path`` (``~`` and variables expanded)
relative to the file's folder, each entry relative to ``base_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

from storycore.errors import ConfigError

__all__ = ["parse_extra_model_paths", "read_extra_model_paths"]


def _strip_comment(line: str) -> str:
    quote: str | None = None
    for i, ch in enumerate(line):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse(text: str, where: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    block: list[str] | None = None
    block_indent = -1
    key_indent = -1
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw.replace("\t", "    "))
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if block is not None and indent > key_indent:
            if block_indent < 0:
                block_indent = indent
            block.append(line.strip())
            continue
        block = None
        content = line.strip()
        if ":" not in content:
            raise ConfigError(
                f"cannot read `{content}`: expected `key: value`",
                where=f"{where}:{number}",
                hint="extra_model_paths.yaml holds sections of `folder: path` lines",
            )
        key, _, value = content.partition(":")
        key, value = _unquote(key), value.strip()
        if indent == 0:
            if value:
                raise ConfigError(
                    f"top-level `{key}` must be a section, not a value",
                    where=f"{where}:{number}",
                    hint="indent the folder lines under a section name such as `comfyui:`",
                )
            section = sections.setdefault(key, {})
            continue
        if section is None:
            raise ConfigError("indented line before any section", where=f"{where}:{number}")
        if value in ("|", "|-", "|+", ">", ">-"):
            block = section.setdefault(key, [])
            block_indent, key_indent = -1, indent
        else:
            section[key] = [_unquote(value)] if value else []
    return sections


def parse_extra_model_paths(
    text: str, yaml_dir: Path, where: str = "extra_model_paths.yaml"
) -> dict[str, list[Path]]:
    """Model folder name -> extra folders, in file order (``custom_nodes`` included)."""
    folders: dict[str, list[Path]] = {}
    for section in _parse(text, where).values():
        base_values = section.pop("base_path", [])
        section.pop("is_default", None)
        base: Path | None = None
        if base_values:
            base = Path(os.path.expandvars(os.path.expanduser(base_values[0])))
            if not base.is_absolute():
                base = yaml_dir / base
        for folder, entries in section.items():
            for entry in entries:
                if not entry:
                    continue
                path = Path(os.path.expandvars(os.path.expanduser(entry)))
                if not path.is_absolute():
                    path = (base if base is not None else yaml_dir) / path
                folders.setdefault(folder, []).append(path)
    return folders


def read_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """Read and parse ``path``; ``{}`` when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", where=str(path)) from exc
    return parse_extra_model_paths(text, path.parent, where=str(path))
