"""How much a ComfyUI server may send: a size limit per endpoint, JSON decoded within bounds.

Everything a server sends is untrusted. An endless ``/object_info`` must not fill the memory, a
``/history`` answer with millions of entries must not take gigabytes, and JSON nested a hundred
thousand levels deep must be a clear error, not a ``RecursionError`` somewhere later. So:

* every answer is read with the limit of its endpoint (:class:`ClientLimits`, settings
  ``comfyui.max_response_mb`` and ``comfyui.max_image_mb``): refused as soon as it is larger,
  from its ``Content-Length`` or while it streams;
* JSON is checked before it is decoded (:func:`decode_json`): at most :data:`MAX_JSON_DEPTH`
  levels, and at most one object or list per :data:`BYTES_PER_CONTAINER` bytes of the limit,
  which bounds what the decoded answer costs in memory (an empty ``{}`` is 64 bytes in Python);
* lone surrogates (``"\\ud800"``, which no UTF-8 file, terminal or journal can hold) in the
  decoded strings become U+FFFD.
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import aiohttp

from storycore._redact import redact
from storycore.errors import ConfigError, ServerResponseError

if TYPE_CHECKING:
    from storycore.config import ComfyUISettings

__all__ = [
    "BYTES_PER_CONTAINER",
    "MAX_JSON_DEPTH",
    "ClientLimits",
    "JsonTooComplex",
    "decode_json",
    "describe_complex",
    "map_strings",
    "read_limited",
    "redact_strings",
    "too_large",
]

MiB = 1 << 20
MAX_JSON_DEPTH = 100
"""Nesting levels a JSON answer may have; ComfyUI's own answers have fewer than ten."""
BYTES_PER_CONTAINER = 64
"""One JSON object or list allowed per this many bytes of an endpoint's limit (a real
``/object_info`` has one per ~70 bytes; a hostile ``[{},{},...]`` one per 3)."""

_READ_CHUNK = 64 * 1024


def _mib(value: int) -> str:
    return f"{value / MiB:g} MiB"


@dataclass(frozen=True)
class ClientLimits:
    """The largest answer accepted from each endpoint, in bytes.

    ``object_info`` with many node packs is tens of MB; ``system_stats`` a few KB; ``queue``
    holds every pending prompt's graph; ``other`` covers ``/prompt``, ``/upload/image``,
    ``/interrupt`` and the rest. ``image`` bounds one ``/view`` download; ``image_pixels`` its
    width x height: 40 megapixels (an 8K UHD frame is 33), so that decoding it (the
    storyboard's thumbnails do) stays within a few hundred MB however well it compressed on the
    wire (a decompression bomb). ``ws_message`` bounds one WebSocket frame.
    """

    system_stats: int = 1 * MiB
    object_info: int = 64 * MiB
    models: int = 16 * MiB
    history: int = 16 * MiB
    queue: int = 32 * MiB
    other: int = 4 * MiB
    image: int = 128 * MiB
    image_pixels: int = 40_000_000
    ws_message: int = 16 * MiB

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"limit {item.name} must be a positive number of bytes, not {value!r}",
                    where=f"limits.{item.name}",
                    hint="use a value greater than 0",
                )

    @classmethod
    def from_settings(cls, comfyui: ComfyUISettings) -> ClientLimits:
        """The limits set in the ``comfyui`` settings (``max_response_mb``, ``max_image_mb``,
        ``max_image_megapixels``)."""
        sizes: dict[str, int] = {
            name: max(1, int(mb * MiB)) for name, mb in dict(comfyui.max_response_mb).items()
        }
        sizes["image"] = max(1, int(comfyui.max_image_mb * MiB))
        sizes["image_pixels"] = max(1, int(comfyui.max_image_megapixels * 1_000_000))
        return cls(**sizes)

    def for_route(self, route: str) -> tuple[int, str]:
        """The limit of ``route`` (``/object_info/KSampler``, ``/history/x``) and the setting
        that raises it."""
        name = route.strip("/").split("/", 1)[0]
        key = name if name in _ROUTE_KEYS else "other"
        return int(getattr(self, key)), f"comfyui.max_response_mb.{key}"


_ROUTE_KEYS = frozenset({"system_stats", "object_info", "models", "history", "queue"})


def too_large(action: str, limit: int, setting: str, where: str) -> ServerResponseError:
    return ServerResponseError(
        f"the answer to {action} is larger than {_mib(limit)}, more than a ComfyUI server "
        "sends; it was not read further",
        where=where,
        hint=f"check the server; if it really sends that much, raise {setting}",
    )


async def read_limited(
    response: aiohttp.ClientResponse, *, limit: int, setting: str, where: str, action: str
) -> bytes:
    """The whole body of ``response``, refused (:class:`ServerResponseError`) as soon as it is
    announced or received larger than ``limit`` bytes."""
    announced = response.content_length
    if announced is not None and announced > limit:
        raise too_large(action, limit, setting, where)
    body = io.BytesIO()
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(action, limit, setting, where)
        body.write(chunk)
    return body.getvalue()  # no copy: the buffer is handed over


class JsonTooComplex(ValueError):
    """A JSON answer nested too deeply or holding too many objects for its size limit."""


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_shape(body: bytes, limit: int) -> None:
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return  # too few brackets to be too deep or too many
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    if depth > MAX_JSON_DEPTH:
        raise JsonTooComplex(f"nested more than {MAX_JSON_DEPTH} levels deep")
    containers = brackets.count(b"[") + brackets.count(b"{")
    allowed = max(10_000, limit // BYTES_PER_CONTAINER)
    if containers > allowed:
        raise JsonTooComplex(f"made of more than {allowed:,} JSON objects and lists")


def map_strings(value: Any, fix: Callable[[str], str]) -> Any:
    """``value`` (decoded JSON) with ``fix`` applied to every string in it, keys too; lists and
    dicts are changed in place, iteratively (no recursion, whatever the depth)."""
    if isinstance(value, str):
        return fix(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            for index, element in enumerate(item):
                if isinstance(element, str):
                    item[index] = fix(element)
                elif isinstance(element, list | dict):
                    stack.append(element)
        elif isinstance(item, dict):
            for key in list(item):
                element = item[key]
                if isinstance(element, str):
                    element = fix(element)
                elif isinstance(element, list | dict):
                    stack.append(element)
                new_key = fix(key) if isinstance(key, str) else key
                if new_key != key:
                    del item[key]
                item[new_key] = element
    return value


def redact_strings(value: Any) -> Any:
    """A copy of decoded JSON (a server's error object) with every known secret hidden."""
    return map_strings(copy.deepcopy(value), redact)


def _no_surrogates(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def decode_json(body: bytes, *, limit: int) -> Any:
    """Decode a JSON answer read under ``limit`` bytes.

    Raises :class:`JsonTooComplex` for an answer too deep or with too many objects, and
    ``ValueError`` for one that is not JSON. Invalid UTF-8 and lone surrogates become U+FFFD.
    """
    _check_shape(body, limit)
    try:
        value = json.loads(body.decode("utf-8", errors="replace"))
    except RecursionError:  # pragma: no cover - the shape check comes first
        raise JsonTooComplex(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    if _SURROGATE_ESCAPE.search(body):
        value = map_strings(value, _no_surrogates)
    return value


def describe_complex(route: str, problem: JsonTooComplex, where: str) -> ServerResponseError:
    """The error for a JSON answer refused by :func:`decode_json`."""
    return ServerResponseError(
        f"the answer to {route} is {problem}, not what a ComfyUI server sends",
        where=where,
        hint="check that the URL points at ComfyUI and not at another web server",
    )
