"""Editing a shot's text and technical values in ``storyboard.json`` (the review page's edit).

The page reads the storyboard with its token (:func:`storyboard_token`, the sha256 of the
file's bytes) and sends it back with the changes; :func:`edit_shot` refuses with
:class:`~storycore.errors.EditConflict` when the file is not those bytes any more (someone
saved it in an editor meanwhile), so an edit never overwrites work it did not see. The check
and the write are one compare-and-swap (:func:`storycore._project_io.write_if_unchanged`,
atomic: a temporary file renamed over the old one).

What may change (anything else is refused, naming the key)::

    {"title", "description", "duration_seconds",
     "prompt_modules": {"subject", "camera", "lighting", "color", "style",
                        "technical": {"seed", "steps", "cfg_scale", "sampler", "scheduler",
                                      "checkpoint", "negative_prompt", "resolution",
                                      "aspect_ratio", "denoise"}}}

A value of ``null`` removes the key (the shot falls back to its default). Numbers may come as
text (``"20"``, from a form field; ``""`` removes); what is written is the JSON number. The
changed shot is checked with the :class:`~storycore.project.Shot` model before anything is
written; a bad value is one paragraph naming the shot and the field. The rest of the file is
kept as it was read: other shots, unknown keys, key order (written back indented by 2, UTF-8).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from storycore._project_io import (
    MAX_FILE_BYTES,
    DiskState,
    decode_json,
    encode_json,
    write_if_unchanged,
)
from storycore._statefiles import open_plain_for_reading
from storycore._storyboard_check import json_path
from storycore._validation_text import describe_errors
from storycore.errors import EditConflict, ProjectError
from storycore.journal import Journal
from storycore.project import STORYBOARD_FILE, Shot
from storycore.review._actions import project_root

__all__ = ["EDITABLE", "MAX_TEXT", "edit_shot", "storyboard_token"]

MAX_TEXT = 10_000  # characters of one edited text value
_NUMBER = "number"
_WHOLE = "whole number"
_TEXT = "text"
_TOP = {"title": _TEXT, "description": _TEXT, "duration_seconds": _NUMBER}
_MODULES = {key: _TEXT for key in ("subject", "camera", "lighting", "color", "style")}
_TECHNICAL = {
    "seed": _WHOLE,
    "steps": _WHOLE,
    "cfg_scale": _NUMBER,
    "denoise": _NUMBER,
    "sampler": _TEXT,
    "scheduler": _TEXT,
    "checkpoint": _TEXT,
    "negative_prompt": _TEXT,
    "resolution": _TEXT,
    "aspect_ratio": _TEXT,
}
#: Every editable field by its path in a shot.
EDITABLE: dict[tuple[str, ...], str] = {
    **{(key,): kind for key, kind in _TOP.items()},
    **{("prompt_modules", key): kind for key, kind in _MODULES.items()},
    **{("prompt_modules", "technical", key): kind for key, kind in _TECHNICAL.items()},
}
_REMOVE: Any = object()
_LARGEST = 2**63 - 1


def _read_bytes(path: Path) -> DiskState:
    """``path``'s bytes (a plain file of at most MAX_FILE_BYTES; a pipe never blocks)."""
    handle = open_plain_for_reading(path, follow_link=True)
    if handle is None:
        if not os.path.lexists(path):
            raise ProjectError(
                "does not exist",
                where=str(path),
                hint="Point --project at a StoryCore project folder",
            )
        raise ProjectError(
            "cannot be read as a plain file (a folder, a pipe, a device or unreadable)",
            where=str(path),
            hint="Replace it with the project's own file",
        )
    with handle:
        st = os.fstat(handle.fileno())
        content = handle.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise ProjectError(
            f"is larger than {MAX_FILE_BYTES // 2**20} MiB; StoryCore reads project files of "
            "at most that size",
            where=str(path),
        )
    return DiskState((st.st_ino, st.st_size, st.st_mtime_ns), content)


def storyboard_token(root: Path) -> str:
    """The sha256 (hex) of ``storyboard.json``'s bytes: what an edit must send back."""
    path = project_root(root) / STORYBOARD_FILE
    return hashlib.sha256(_read_bytes(path).content).hexdigest()


def _refuse(shot_id: str, where: str, path: tuple[str, ...], text: str) -> ProjectError:
    return ProjectError(
        f"shot '{shot_id}': `{'.'.join(path) or 'changes'}` {text}; nothing was written",
        where=where,
        hint="Correct that value and save again",
    )


def _value(kind: str, value: Any, fail: Any) -> Any:
    """``value`` as the JSON value of ``kind`` (``_REMOVE`` for null or empty number text)."""
    if value is None:
        return _REMOVE
    if kind == _TEXT:
        if not isinstance(value, str):
            raise fail(f"should be text, not {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise fail(f"holds {len(value):,} characters; at most {MAX_TEXT:,} may be saved")
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _REMOVE
        if len(text) > 40:
            raise fail(f"should be a {kind}, not text of {len(text)} characters")
        try:
            value = int(text) if kind == _WHOLE and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise fail(f"should be a {kind}, not {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"should be a {kind}, not {_kind(value)}")
    if isinstance(value, int) and abs(value) > _LARGEST:
        raise fail(f"should be a {kind} of at most {_LARGEST}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(f"should be a finite {kind}, not {value}")
        if kind == _WHOLE:
            if not value.is_integer():
                raise fail(f"should be a whole number, not {value}")
            value = int(value)
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    return f"{type(value).__name__} {str(value)[:40]}"


def _flatten(
    changes: Any, prefix: tuple[str, ...], fail: Any, out: dict[tuple[str, ...], Any]
) -> None:
    if not isinstance(changes, Mapping):
        raise fail(prefix, f"should be an object of fields to change, not {_kind(changes)}")
    for key, value in changes.items():
        path = (*prefix, str(key))
        if path in EDITABLE:
            out[path] = _value(EDITABLE[path], value, lambda text, p=path: fail(p, text))
        elif path in (("prompt_modules",), ("prompt_modules", "technical")):
            _flatten(value, path, fail, out)
        else:
            here = dict.fromkeys(
                p[len(prefix)]
                for p in EDITABLE
                if len(p) > len(prefix) and p[: len(prefix)] == prefix
            )
            raise fail(
                path, f"is not a field the review can edit (editable here: {', '.join(here)})"
            )


def _apply(shot: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set (or remove) ``path`` in ``shot``, keeping the place of an existing key."""
    node = shot
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is _REMOVE:
                return
            child = node[key] = {}
        node = child
    if value is _REMOVE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _check(shot: dict[str, Any], shot_id: str, where: str) -> None:
    try:
        Shot.model_validate(shot)
    except ValidationError as exc:
        problems = describe_errors(Shot, exc.errors())
        text = "; ".join(f"`{json_path(loc)}` {message}" for loc, message in problems[:5])
        raise ProjectError(
            f"shot '{shot_id}': {text}; nothing was written",
            where=where,
            hint="Correct that value and save again",
        ) from None


def edit_shot(root: Path, shot_id: str, changes: Mapping[str, Any], expected: str) -> str:
    """Apply ``changes`` to shot ``shot_id`` in ``storyboard.json`` if the file's token is
    still ``expected``; the new token. :class:`EditConflict` when the file changed since,
    :class:`ProjectError` naming the field for a value that is not allowed."""
    root = project_root(root)
    path = root / STORYBOARD_FILE
    where = str(path)
    state = _read_bytes(path)
    if not isinstance(expected, str) or hashlib.sha256(state.content).hexdigest() != expected:
        raise EditConflict(
            "storyboard.json changed on disk since the page read it; reload and edit again "
            "(nothing was written)",
            where=where,
        )

    def fail(field: tuple[str, ...], text: str) -> ProjectError:
        return _refuse(shot_id, where, field, text)

    flat: dict[tuple[str, ...], Any] = {}
    _flatten(changes, (), fail, flat)
    board = decode_json(state.content, path)
    shots = board.get("shots") if isinstance(board, dict) else None
    position = next(
        (
            i
            for i, s in enumerate(shots if isinstance(shots, list) else [])
            if isinstance(s, dict) and s.get("shot_id") == shot_id
        ),
        None,
    )
    if position is None or not isinstance(shots, list):
        raise ProjectError(
            f"has no shot '{shot_id}'", where=where, hint="Reload the page and edit again"
        )
    before = shots[position]
    after = copy.deepcopy(before)
    for field, value in flat.items():
        _apply(after, field, value)
    if after == before:
        return expected
    _check(after, shot_id, where)
    shots[position] = after
    payload = encode_json(board)
    changed = [".".join(f) for f in flat]
    try:
        with Journal(root) as log:
            log.append("review", action="edit", shot_id=shot_id, fields=changed)
        _state, written = write_if_unchanged(path, payload, state, inside=root)
    except OSError as exc:
        raise ProjectError(
            f"cannot be written ({exc.strerror or exc}); the edit was not saved",
            where=str(exc.filename or path),
            hint="Check that the project folder is yours and writable, and try again",
        ) from None
    if not written:
        raise EditConflict(
            "storyboard.json changed on disk while the edit was being saved; reload and edit "
            "again (nothing was written)",
            where=where,
        )
    return hashlib.sha256(payload).hexdigest()
