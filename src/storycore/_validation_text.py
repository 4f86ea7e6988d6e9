"""Pydantic's validation errors, said for people (pure).

Pydantic says ``string should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'``; a person
needs "letters, digits, `_ . -`, at most 128 characters". Every message here is built from the
field the error is about (its type, pattern, choices and range), found by walking the model along
the error's location, so a union's two errors (``str``, ``int``) become one message and a range
reads "a whole number from 1 to 1000".
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from storycore._project_models import RATIO, RESOLUTION, SAFE_ID

__all__ = ["PATTERN_TEXT", "describe_errors", "expected_text"]

# Every pattern a model uses, in words (a test checks that none is missing).
PATTERN_TEXT = {
    SAFE_ID: "letters, digits, `_ . -`, at most 128 characters, starting with a letter or digit",
    RATIO: "a ratio such as `16:9` or `2.39:1`",
    RESOLUTION: "a size WIDTHxHEIGHT in pixels such as `1920x1080`",
}

_CONSTRAINT_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "literal_error",
        "enum",
        "finite_number",
    }
)


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _nullable(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in (
        typing.get_args(annotation)
    )


def _field(model: type[BaseModel], key: str | int) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _locate(
    model: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[tuple[str | int, ...], FieldInfo | None, Any]:
    """The JSON path of ``loc`` (a union member's tag dropped), the field there and the type
    expected there (a list's item type below a list field)."""
    path: list[str | int] = []
    info: FieldInfo | None = None
    current: Any = model
    for part in loc:
        members = _members(current)
        target = members[0] if len(members) == 1 else None
        if isinstance(target, type) and issubclass(target, BaseModel):
            info = _field(target, part)
            path.append(part)
            current = info.annotation if info is not None else Any
        elif typing.get_origin(target) in (list, dict) and isinstance(part, int | str):
            path.append(part)
            current = typing.get_args(target)[-1] if typing.get_args(target) else Any
            info = None
        elif isinstance(part, str) and len(members) > 1:
            continue  # pydantic names the union member it tried: not part of the JSON path
        else:
            path.append(part)
            current, info = Any, None
    return tuple(path), info, current


def _number_range(info: FieldInfo, whole: bool) -> str:
    low = high = None
    low_open = high_open = False
    for item in info.metadata:
        if getattr(item, "ge", None) is not None:
            low = item.ge
        if getattr(item, "gt", None) is not None:
            low, low_open = item.gt, True
        if getattr(item, "le", None) is not None:
            high = item.le
        if getattr(item, "lt", None) is not None:
            high, high_open = item.lt, True
    noun = "a whole number" if whole else "a number"
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"{noun} from {low} to {high}"
        left = f"above {low}" if low_open else f"at least {low}"
        right = f"below {high}" if high_open else f"at most {high}"
        return f"{noun} {left} and {right}"
    if low is not None:
        return f"{noun} above {low}" if low_open else f"{noun} of at least {low}"
    if high is not None:
        return f"{noun} below {high}" if high_open else f"{noun} of at most {high}"
    return noun


def _type_text(annotation: Any, info: FieldInfo | None) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int or annotation is float:
        return _number_range(info, annotation is int) if info else "a number"
    if annotation is str:
        if info is not None:
            for item in info.metadata:
                pattern = getattr(item, "pattern", None)
                if pattern:
                    return PATTERN_TEXT.get(pattern, f"text matching `{pattern}`")
                if getattr(item, "min_length", None):
                    return "text, not empty"
        return "text"
    origin = typing.get_origin(annotation)
    if origin is list:
        return "a list ([...])"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "an object ({...})"
    return "a JSON value of another kind"


def expected_text(annotation: Any, info: FieldInfo | None) -> str:
    """What a field of ``annotation`` takes, in words ("a whole number from 1 to 1000")."""
    members = _members(annotation)
    text = " or ".join(_type_text(m, info) for m in members)
    return f"{text} (or null)" if _nullable(annotation) else text


def _got(value: Any) -> str:
    if isinstance(value, dict | list):
        return ""
    shown = repr(value) if not isinstance(value, str) else f"'{value}'"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f", got {shown}"


def _message(problem: ErrorDetails, info: FieldInfo | None, expected: Any) -> str:
    kind = problem["type"]
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(problem["msg"]).removeprefix("Value error, ")
    if info is None and expected is Any:
        return str(problem["msg"])  # free-form data: pydantic's words are all there is
    if kind == "string_too_short" and info is not None:
        return "must not be empty"
    annotation = info.annotation if info is not None else expected
    if kind in _CONSTRAINT_ERRORS:
        # The value had the right type: say what the field takes, without "or null".
        members = _members(annotation)
        annotation = members[0] if len(members) == 1 else annotation
    return f"should be {expected_text(annotation, info)}{_got(problem.get('input'))}"


def describe_errors(
    model: type[BaseModel], problems: list[ErrorDetails]
) -> list[tuple[tuple[str | int, ...], str]]:
    """``(JSON path, message)`` per problem, one per path (a union's several errors are one)."""
    seen: dict[tuple[str | int, ...], str] = {}
    for problem in problems:
        path, info, expected = _locate(model, tuple(problem["loc"]))
        if path not in seen:
            seen[path] = _message(problem, info, expected)
    return list(seen.items())
