"""Value nodes: primitives, text and the small helpers whose outputs feed widget inputs.

These return real Python values (``int``, ``float``, ``str``, ``bool``), so a linked
``PrimitiveInt -> EmptyImage.width`` gets the number, as in ComfyUI. Semantics follow
ComfyUI comfy_extras/nodes_primitive.py and comfy_extras/nodes_string.py @ 4bf9c525 (the
0.3.64 recording, object_info.json, lists the same classes and inputs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._node_types import NodeContext, NodeResult

__all__ = ["VALUE_IMPLEMENTATIONS"]

Impl = Callable[[NodeContext, dict[str, Any]], NodeResult]


def _one(value: Any) -> NodeResult:
    return NodeResult((value,))


def _primitive(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # nodes_primitive.py: every Primitive* node returns its ``value`` unchanged.
    return _one(i["value"])


def _concatenate(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _one(str(i["delimiter"]).join((str(i["string_a"]), str(i["string_b"]))))


def _substring(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _one(str(i["string"])[int(i["start"]) : int(i["end"])])


def _length(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _one(len(str(i["string"])))


def _case(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    s, mode = str(i["string"]), i["mode"]
    converters: dict[str, Callable[[str], str]] = {
        "UPPERCASE": str.upper,
        "lowercase": str.lower,
        "Capitalize": str.capitalize,
        "Title Case": str.title,
    }
    return _one(converters.get(mode, str)(s))


def _trim(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    s, mode = str(i["string"]), i["mode"]
    trims: dict[str, Callable[[str], str]] = {
        "Both": str.strip,
        "Left": str.lstrip,
        "Right": str.rstrip,
    }
    return _one(trims.get(mode, str)(s))


def _replace(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return _one(str(i["string"]).replace(str(i["find"]), str(i["replace"])))


def _contains(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    s, sub = str(i["string"]), str(i["substring"])
    if not i.get("case_sensitive", True):
        s, sub = s.lower(), sub.lower()
    return _one(sub in s)


def _compare(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    a, b = str(i["string_a"]), str(i["string_b"])
    if not i.get("case_sensitive", True):
        a, b = a.lower(), b.lower()
    mode = i["mode"]
    if mode == "Equal":
        return _one(a == b)
    if mode == "Starts With":
        return _one(a.startswith(b))
    if mode == "Ends With":
        return _one(a.endswith(b))
    return _one(None)  # ComfyUI returns nothing for another mode


def _flags(i: dict[str, Any]) -> int:
    flags = 0
    if i.get("case_insensitive", True):
        flags |= re.IGNORECASE
    if i.get("multiline", False):
        flags |= re.MULTILINE
    if i.get("dotall", False):
        flags |= re.DOTALL
    return flags


def _regex_match(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    try:
        return _one(re.search(str(i["regex_pattern"]), str(i["string"]), _flags(i)) is not None)
    except re.error:
        return _one(False)


def _regex_extract(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    pattern, s, flags = str(i["regex_pattern"]), str(i["string"]), _flags(i)
    mode, group = i["mode"], int(i.get("group_index", 1))
    try:
        if mode == "First Match":
            m = re.search(pattern, s, flags)
            return _one(m.group(0) if m else "")
        if mode == "All Matches":
            found = re.findall(pattern, s, flags)
            if found and isinstance(found[0], tuple):
                return _one("\n".join(m[0] for m in found))
            return _one("\n".join(found))
        if mode == "First Group":
            m = re.search(pattern, s, flags)
            ok = m is not None and len(m.groups()) >= group and m.group(group) is not None
            return _one(m.group(group) if ok and m is not None else "")
        if mode == "All Groups":
            out = [
                m.group(group)
                for m in re.finditer(pattern, s, flags)
                if m.groups() and len(m.groups()) >= group and m.group(group) is not None
            ]
            return _one("\n".join(out))
    except re.error:
        pass
    return _one("")


def _regex_replace(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # No re.error guard here, as in ComfyUI: a bad pattern is an execution_error.
    return _one(
        re.sub(
            str(i["regex_pattern"]),
            str(i["replace"]),
            str(i["string"]),
            count=int(i.get("count", 0)),
            flags=_flags(i),
        )
    )


def _image_size(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    # comfy_extras/nodes_images.py GetImageSize @ 015e6046: (width, height, batch_size).
    images = i["image"]
    w, h = images[0].size
    return NodeResult((w, h, len(images)))


VALUE_IMPLEMENTATIONS: dict[str, Impl] = {
    "PrimitiveInt": _primitive,
    "PrimitiveFloat": _primitive,
    "PrimitiveString": _primitive,
    "PrimitiveStringMultiline": _primitive,
    "PrimitiveBoolean": _primitive,
    "StringConcatenate": _concatenate,
    "StringSubstring": _substring,
    "StringLength": _length,
    "CaseConverter": _case,
    "StringTrim": _trim,
    "StringReplace": _replace,
    "StringContains": _contains,
    "StringCompare": _compare,
    "RegexMatch": _regex_match,
    "RegexExtract": _regex_extract,
    "RegexReplace": _regex_replace,
    "GetImageSize": _image_size,
}
