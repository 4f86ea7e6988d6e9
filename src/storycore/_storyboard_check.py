"""Keys StoryCore does not know, in ``storyboard.json`` and ``project.json`` (pure, no I/O).

A typo (``"stpes": 30``) is valid JSON and valid Data Contract, so it would silently render with
the default. :func:`unknown_keys` walks the raw JSON beside the models and reports every key that
no model field names, with the closest known key ("did you mean `steps`?") or, for a key that
belongs further down (``steps`` on a shot), where it goes.

Not reported: extensions, keys starting with ``x_`` or ``x-`` (anywhere, with everything under
them), and what a field takes as free-form data (a shot's ``notes``, ``characters``, ``status``,
``shots_index``, ``asset_manifest``...). The known keys come from the models' fields, never from a
list kept by hand.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel

from storycore._project_models import EXTENSION_PREFIXES, ProjectFileModel, Storyboard

if TYPE_CHECKING:
    from storycore.project import Project

__all__ = [
    "StoryboardWarning",
    "is_extension",
    "json_path",
    "known_keys",
    "storyboard_warnings",
    "unknown_keys",
]


@dataclass(frozen=True)
class StoryboardWarning:
    """One key StoryCore does not know: the file, its JSON path and what it may have meant."""

    file: str
    path: str
    key: str
    suggestion: str | None = None
    shot_id: str | None = None

    def text(self) -> str:
        """One line for people, naming the file, the path and the shot."""
        shot = f" (shot '{self.shot_id}')" if self.shot_id else ""
        if self.suggestion:
            advice = f"did you mean `{self.suggestion}`?"
        else:
            advice = "StoryCore does not read it (name your own keys `x_...` to keep them quietly)"
        return f"{self.file}: {self.path}{shot}: unknown key `{self.key}`; {advice}"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "file": self.file,
            "path": self.path,
            "key": self.key,
            "suggestion": self.suggestion,
            "shot_id": self.shot_id,
            "message": self.text(),
        }


def is_extension(key: str) -> bool:
    """Whether ``key`` is a user's own extension (``x_...``, ``x-...``)."""
    return key.startswith(EXTENSION_PREFIXES)


def json_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """``("shots", 2, "technical")`` -> ``shots[2].technical``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# A field's annotation -> (the model to walk into, whether its JSON is a list of them).
def _child_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _child_model(members[0]) if len(members) == 1 else (None, False)
    if origin is list:
        inner, _ = _child_model(typing.get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


@functools.cache
def _structure(model: type[BaseModel]) -> tuple[frozenset[str], dict[str, tuple[Any, bool]]]:
    keys = frozenset(info.alias or name for name, info in model.model_fields.items())
    children: dict[str, tuple[Any, bool]] = {}
    for name, info in model.model_fields.items():
        child, is_list = _child_model(info.annotation)
        if child is not None:
            children[info.alias or name] = (child, is_list)
    return keys, children


def known_keys(model: type[BaseModel]) -> frozenset[str]:
    """The keys ``model``'s JSON object may hold (its fields, by their JSON names)."""
    return _structure(model)[0]


@functools.cache
def _deeper_keys(model: type[BaseModel]) -> dict[str, str]:
    """Keys of the single objects below ``model`` (not of lists), each with its path from
    ``model``, nearest first: where a key put one level too high belongs."""
    found: dict[str, str] = {}
    singles = [
        (key, child) for key, (child, is_list) in _structure(model)[1].items() if not is_list
    ]
    for key, child in singles:
        for sub in sorted(known_keys(child)):
            found.setdefault(sub, f"{key}.{sub}")
    for key, child in singles:
        for sub, rel in _deeper_keys(child).items():
            found.setdefault(sub, f"{key}.{rel}")
    return found


def _suggest(model: type[BaseModel], key: str) -> str | None:
    """The known key ``key`` was probably meant to be (or the path where it belongs)."""
    known = sorted(known_keys(model))
    deeper = _deeper_keys(model)
    if key in deeper:
        return deeper[key]
    folded = {k.lower(): k for k in [*known, *deeper]}
    if key.lower() in folded:
        match = folded[key.lower()]
        return match if match in known else deeper[match]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    longer = [k for k in known if len(key) >= 3 and k.startswith(key.lower())]
    if len(longer) == 1:
        return longer[0]  # `cfg` (as in [render]) for `cfg_scale`
    close = difflib.get_close_matches(key, sorted(deeper), n=1, cutoff=0.75)
    return deeper[close[0]] if close else None


def unknown_keys(
    raw: Any, model: type[BaseModel], path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str, str | None]]:
    """Every key in ``raw`` (JSON shaped like ``model``) that ``model`` does not know, as
    ``(path of the key, key, suggestion)``, in document order. Values of the wrong shape are
    passed over (validation reports them)."""
    if not isinstance(raw, dict):
        return
    keys, children = _structure(model)
    for key, value in raw.items():
        if not isinstance(key, str) or is_extension(key):
            continue
        if key not in keys:
            yield (*path, key), key, _suggest(model, key)
            continue
        child = children.get(key)
        if child is None:
            continue
        child_model, is_list = child
        if is_list:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield from unknown_keys(item, child_model, (*path, key, index))
        else:
            yield from unknown_keys(value, child_model, (*path, key))


def _shot_id(board: dict[str, Any], parts: tuple[str | int, ...]) -> str | None:
    if len(parts) < 3 or parts[0] != "shots" or not isinstance(parts[1], int):
        return None
    shots: Any = board.get("shots")
    try:
        shot_id = shots[parts[1]].get("shot_id")
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return shot_id if isinstance(shot_id, str) else None


def check_documents(project_data: Any, storyboard: Any, root: Path) -> list[StoryboardWarning]:
    """The unknown keys of both files' raw JSON (``root`` names the files in the warnings)."""
    from storycore.project import PROJECT_FILE, STORYBOARD_FILE

    found: list[StoryboardWarning] = []
    for name, raw, model in (
        (PROJECT_FILE, project_data, ProjectFileModel),
        (STORYBOARD_FILE, storyboard, Storyboard),
    ):
        board = raw if model is Storyboard and isinstance(raw, dict) else {}
        for parts, key, suggestion in unknown_keys(raw, model):
            found.append(
                StoryboardWarning(
                    file=str(root / name),
                    path=json_path(parts),
                    key=key,
                    suggestion=suggestion,
                    shot_id=_shot_id(board, parts),
                )
            )
    return found


def storyboard_warnings(project: Project) -> list[StoryboardWarning]:
    """The keys StoryCore does not know in the loaded project's ``project.json`` and
    ``storyboard.json``, in file and document order. Cheap: one walk over the raw JSON."""
    return check_documents(project.data, project.storyboard, project.root)
