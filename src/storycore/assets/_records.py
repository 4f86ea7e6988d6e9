"""Reading a manifest record as received: a project is shared, edited by hand, written by a newer
StoryCore. Each ``asset_manifest.generated_images`` item becomes an :class:`AssetRecord` whose
fields have the types the record promises, or a problem in words; never an exception.

:meth:`AssetRecord.from_dict` reads the item (it tolerates unknown keys, numbers written as
text and odd descriptive values); this module adds what the board and ``assets`` need on top,
whatever that reader let through:

- a field that identifies the render (``asset_id``, ``shot_id``, ``path``, ``sha256``,
  ``version``, ``render``) of the wrong type, or holding a lone surrogate (which no file name,
  terminal or page can hold), makes the item a problem: ``assets verify`` reports it,
  ``assets clean`` keeps it and its files, the board shows the panel as not rendered;
- numbers written as text (``"12"``, ``12.0``, ``"3.5"`` seconds) are read as numbers;
- a descriptive field of the wrong type reads as absent (``size``/``width``/``height`` as 0),
  and a lone surrogate in descriptive text is shown as U+FFFD;
- ``approved`` that is not ``true``/``false`` counts as approved: a clean keeps the render.
"""

from __future__ import annotations

import re
from typing import Any

from storycore.manifest import AssetRecord, Timings, finite_seconds, whole_number

__all__ = ["read_record"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTITY_TEXT = ("asset_id", "shot_id", "path", "sha256")
_IDENTITY_WHOLE = ("version", "render")
_SIZES = ("size", "width", "height")
_TIMINGS = frozenset(Timings.__dataclass_fields__)
_OPTIONAL_TEXT = (
    "prompt_id",
    "server_url",
    "comfyui_version",
    "workflow_sha256",
    "checkpoint",
    "template",
)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", type(None): "null", bool: "true/false"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str | None:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else None


def read_record(item: Any) -> tuple[AssetRecord | None, str | None]:
    """``(record, None)`` for a manifest item that reads as a record, ``(None, problem)``
    otherwise; ``problem`` names the field (``"'version' is str, not a whole number"``)."""
    if not isinstance(item, dict):
        return None, f"is {_kind(item)}, not a JSON object"
    timings = item.get("timings")
    if isinstance(timings, dict) and not timings.keys() <= _TIMINGS:
        # a newer version's timing (kept in project.json; the record type has no place for it)
        item = {**item, "timings": {k: v for k, v in timings.items() if k in _TIMINGS}}
    try:
        record = AssetRecord.from_dict(item)
    except (TypeError, ValueError, AttributeError) as exc:
        return None, f"is not a valid record ({_shown(str(exc))})"
    for name in _IDENTITY_TEXT:
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            return None, f"'{name}' is {_kind(value)}, not text"
        if _SURROGATE.search(value):
            return None, f"'{name}' holds a character that is not valid Unicode (a lone surrogate)"
    for name in _IDENTITY_WHOLE:
        value = getattr(record, name)
        number = whole_number(value)
        if number is None or number < 0:
            return None, f"'{name}' is {_kind(value)}, not a whole number"
        setattr(record, name, number)
    for name in _SIZES:
        number = whole_number(getattr(record, name))
        setattr(record, name, number if number is not None and number >= 0 else 0)
    for name in _OPTIONAL_TEXT:
        setattr(record, name, _shown(getattr(record, name)))
    record.created_at = _shown(record.created_at) or ""
    record.seed = whole_number(record.seed)
    record.placeholder = record.placeholder is True
    raw_approved = item.get("approved")
    odd = raw_approved is not None and not isinstance(raw_approved, bool)
    record.approved = record.approved is True or odd
    models = record.models
    record.models = (
        [m for m in (_shown(m) for m in models) if m] if isinstance(models, list) else []
    )
    read = record.timings if isinstance(record.timings, Timings) else Timings()
    record.timings = Timings(**{name: finite_seconds(getattr(read, name)) for name in _TIMINGS})
    return record, None
