"""Read ComfyUI's ``extra_model_paths.yaml`` the way ComfyUI reads it.

ComfyUI loads the file with ``yaml.safe_load`` and walks it in ``utils/extra_config.py``
(Comfy-Org/ComfyUI, commit 88bee2202737710ac916b860b498bd14364316af, ``_extra_paths``):

* every top-level key is a section; a section whose value is empty is skipped;
* ``base_path`` is popped from the section, ``~`` and environment variables are expanded, and a
  relative one is taken against the folder of the yaml file;
* ``is_default`` is popped; a true value puts the section's folders *first* in ComfyUI's search
  order (``folder_paths.add_model_folder_path(..., is_default=True)`` inserts at the front);
* every other key is a model folder name whose value is split on newlines (a ``|`` block holds
  one folder per line), empty lines skipped; each folder is joined to ``base_path`` (an absolute
  one stays as it is), or without ``base_path`` taken against the yaml file's folder when
  relative; then normalised. Entries themselves get no ``~`` expansion, as in ComfyUI.

PyYAML does the parsing, so quoting, escapes, flow maps, anchors and comments mean what they mean
to ComfyUI. A file ComfyUI could not load (bad YAML, a folder that is not a string) raises
:class:`ConfigError` naming the file and line instead of the traceback ComfyUI would print.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from storycore.errors import ConfigError

__all__ = [
    "ExtraModelPath",
    "apply_extra_model_paths",
    "extra_model_path_entries",
    "load_extra_model_paths",
    "parse_extra_model_paths",
    "read_extra_model_paths",
]

_HINT = (
    "Fix the file (ComfyUI would stop reading it too): each section maps a model folder name "
    "to a path, or to a `|` block of one path per line"
)


@dataclass(frozen=True)
class ExtraModelPath:
    """One folder ComfyUI adds: ``folder`` as written in the file (legacy names included)."""

    folder: str
    path: Path
    is_default: bool = False


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _yaml_error(exc: yaml.YAMLError, where: str) -> ConfigError:
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    # The scanner's context is the token it could not finish (a key without its colon, a quote
    # never closed): that is the line to fix. The parser's context is the enclosing block, so
    # its problem mark is the better line there.
    scanning = isinstance(exc, yaml.scanner.ScannerError) and context_mark is not None
    mark = context_mark if scanning else (problem_mark or context_mark)
    message = f"not valid YAML: {problem}"
    if problem_mark is not None and mark is not problem_mark:
        message += f" at line {problem_mark.line + 1}"
    if context:
        message += f" ({context}" + (
            f" at line {context_mark.line + 1})" if context_mark is not None else ")"
        )
    located = f"{where}:{mark.line + 1}" if mark is not None else where
    return ConfigError(message, where=located, hint=_HINT)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_object(node, deep=True)


def _entries(
    loader: yaml.SafeLoader, root: yaml.Node | None, yaml_dir: str, where: str
) -> Iterator[ExtraModelPath]:
    """Yield ExtraModelPath in file order, following ComfyUI's ``_extra_paths``."""
    if root is None:
        return  # an empty file: ComfyUI would fail on None; nothing to add is the kind reading
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(
            "the top level must be sections (`name:` followed by indented folder lines)",
            where=f"{where}:{_line(root)}",
            hint=_HINT,
        )
    loader.flatten_mapping(root)
    for section_key, section in root.value:
        if isinstance(section, yaml.ScalarNode) and _scalar(loader, section) is None:
            continue
        name = _scalar(loader, section_key)
        if not isinstance(section, yaml.MappingNode):
            raise ConfigError(
                f"section `{name}` must hold `folder: path` lines, not a single value",
                where=f"{where}:{_line(section)}",
                hint="indent the folder lines under the section name",
            )
        loader.flatten_mapping(section)
        items = [(str(_scalar(loader, k)), v) for k, v in section.value]
        base_path: str | None = None
        is_default = False
        folders = []
        for key, value_node in items:
            if key == "base_path":
                value = _scalar(loader, value_node)
                if not isinstance(value, str):
                    raise ConfigError(
                        f"`{name}.base_path` must be a folder path, not {value!r}",
                        where=f"{where}:{_line(value_node)}",
                        hint=_HINT,
                    )
                base = os.path.expandvars(os.path.expanduser(value))
                if not os.path.isabs(base):
                    base = os.path.abspath(os.path.join(yaml_dir, base))
                base_path = base
            elif key == "is_default":
                is_default = bool(_scalar(loader, value_node))
            else:
                folders.append((key, value_node))
        for folder, value_node in folders:
            value = _scalar(loader, value_node)
            if not isinstance(value, str):
                shown = "nothing" if value is None else repr(value)
                raise ConfigError(
                    f"`{name}.{folder}` must be a path (or a `|` block of paths), not {shown}",
                    where=f"{where}:{_line(value_node)}",
                    hint=_HINT,
                )
            for entry in value.split("\n"):
                if not entry:
                    continue
                if base_path:
                    full = os.path.join(base_path, entry)
                elif not os.path.isabs(entry):
                    full = os.path.abspath(os.path.join(yaml_dir, entry))
                else:
                    full = entry
                yield ExtraModelPath(folder, Path(os.path.normpath(full)), is_default)


def extra_model_path_entries(
    text: str, yaml_dir: Path, where: str = "extra_model_paths.yaml"
) -> list[ExtraModelPath]:
    """Every folder the file adds, in file order, with its ``is_default`` flag."""
    directory = os.path.abspath(yaml_dir)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return list(_entries(loader, root, directory, where))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, where) from None
    finally:
        loader.dispose()


def parse_extra_model_paths(
    text: str, yaml_dir: Path, where: str = "extra_model_paths.yaml"
) -> dict[str, list[Path]]:
    """Model folder name -> extra folders, in file order (``custom_nodes`` included)."""
    folders: dict[str, list[Path]] = {}
    for entry in extra_model_path_entries(text, yaml_dir, where):
        folders.setdefault(entry.folder, []).append(entry.path)
    return folders


def apply_extra_model_paths(roots: Sequence[Path], entries: Iterable[ExtraModelPath]) -> list[Path]:
    """ComfyUI's search order for one folder: its own ``roots`` plus ``entries`` added one by one
    as ``folder_paths.add_model_folder_path`` adds them (a default one goes to the front, moving
    there when already listed; another is appended unless already listed)."""
    paths = list(roots)
    for entry in entries:
        if entry.path in paths:
            if entry.is_default and paths[0] != entry.path:
                paths.remove(entry.path)
                paths.insert(0, entry.path)
        elif entry.is_default:
            paths.insert(0, entry.path)
        else:
            paths.append(entry.path)
    return paths


def load_extra_model_paths(path: Path) -> list[ExtraModelPath]:
    """Read and parse ``path``; ``[]`` when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start}); ComfyUI reads it as UTF-8",
            where=str(path),
            hint="save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", where=str(path)) from None
    return extra_model_path_entries(text, path.parent, where=str(path))


def read_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """:func:`load_extra_model_paths` as folder name -> folders; ``{}`` when it does not exist."""
    folders: dict[str, list[Path]] = {}
    for entry in load_extra_model_paths(path):
        folders.setdefault(entry.folder, []).append(entry.path)
    return folders
