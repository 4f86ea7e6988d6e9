"""Settings in words: TOML syntax for values, masked credentials, errors with a "did you mean".

Pure helpers for :mod:`storycore.config` (no I/O). A value shown to a person is written the way
they would write it in ``storycore.toml`` (``true``, ``"warning"``, ``["--a", "--b"]``,
``{ a = "b" }``); a backend's token, password, header values and the password in a URL are shown
as ``"***"``, in tables, ``--json`` documents and error messages alike. A settings file is
checked for nesting before it is parsed (:func:`toml_nesting_problem`).
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from storycore.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "MASK",
    "NAME_PATTERN",
    "URL_PATTERN",
    "closest",
    "env_name",
    "mask_settings",
    "mask_url",
    "settings_error",
    "toml_nesting_problem",
    "toml_value",
    "unknown_variable",
]

ENV_PREFIX = "STORYCORE_"
MASK = "***"
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
URL_PATTERN = r"^https?://[^\s]+$"

_PATTERN_WORDS = {
    NAME_PATTERN: "should hold only letters, digits and `_ . -`",
    URL_PATTERN: "should be an http:// or https:// URL without spaces",
}
# pydantic's words that name Python types, in the words of a settings file
_TYPE_WORDS = {
    "path_type": 'should be a path, in quotes (e.g. "templates/sdxl.toml")',
    "tuple_type": 'should be a list (e.g. ["--a", "--b"])',
    "list_type": 'should be a list (e.g. ["--a", "--b"])',
}
# What a person may see of a [[backends]] entry; anything else there may be a credential.
_SHOWN_BACKEND_KEYS = frozenset({"url", "name", "username", "managed", "cuda_device", "weight"})
_SECRET_BACKEND_KEYS = ("token", "password")
# user:password@ up to the last "@" before the path: a password may hold an "@" of its own
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:)[^/\s]*@")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_TOML_ESCAPES["\r"] = "\\r"


# --- TOML syntax ---------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` as it is written in a TOML file. ``None`` (which TOML lacks) inside a table or a
    list is left out; a lone ``None`` is the empty string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Mapping):
        items = [
            f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items() if v is not None
        ]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    return _toml_string(str(value))  # str, and paths


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


# --- nesting, checked before parsing ------------------------------------------------------------
# tomllib recurses once per nested array or inline table (100000 of them: RecursionError), and a
# dotted key costs memory quadratic in its length (20000 parts: 1.5 GB). No settings file needs
# more than a few levels, so a file is scanned first (strings and comments skipped) and refused
# beyond these bounds.

MAX_TOML_DEPTH = 32
MAX_KEY_PARTS = 32
_WORD = re.compile(r"[^\s.\[\]{}=,#\"']+")
_BASIC_STOP = re.compile(r'["\\\n]')


def toml_nesting_problem(text: str) -> str | None:
    """Why ``text`` nests deeper than any settings file needs, or ``None``: more than
    :data:`MAX_TOML_DEPTH` arrays/tables open at once, or a dotted name of more than
    :data:`MAX_KEY_PARTS` parts. Linear in the text; a syntax error is left to the parser."""
    depth, parts, dotted, i, n = 0, 0, False, 0, len(text)
    while i < n:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if char in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return (
                    f"is nested too deeply (more than {MAX_TOML_DEPTH} arrays or tables inside "
                    f"one another at line {text.count(chr(10), 0, i) + 1})"
                )
            parts, dotted, i = 0, False, i + 1
            continue
        if char in "]}":
            depth, parts, dotted, i = max(0, depth - 1), 0, False, i + 1
            continue
        if char == ".":
            dotted, i = parts > 0, i + 1
            continue
        if char in " \t":
            i += 1
            continue
        if char in "\"'":
            end = _string_end(text, i)
            if end < 0:
                return None  # an unterminated string: tomllib names the line
        else:
            word = _WORD.match(text, i)
            if word is None:  # "=", ",", a line break: a name ends here
                parts, dotted, i = 0, False, i + 1
                continue
            end = word.end()
        parts, dotted, i = (parts + 1 if dotted else 1), False, end
        if parts > MAX_KEY_PARTS:
            return (
                f"is nested too deeply (a dotted name of more than {MAX_KEY_PARTS} parts at "
                f"line {text.count(chr(10), 0, i) + 1})"
            )
    return None


def _string_end(text: str, start: int) -> int:
    """Where the TOML string starting at ``start`` ends (just past it), or -1 if it does not."""
    quote = text[start]
    if text.startswith(quote * 3, start):
        search = start + 3
        while True:
            close = text.find(quote * 3, search)
            if close < 0:
                return -1
            slashes = 0
            while (
                quote == '"' and close - slashes - 1 >= search and text[close - slashes - 1] == "\\"
            ):
                slashes += 1
            if slashes % 2:
                search = close + 1
                continue
            end = close + 3
            while end < len(text) and text[end] == quote and end < close + 5:
                end += 1  # up to two quotes of the content may touch the closing ones
            return end
    if quote == "'":
        close, line_end = text.find("'", start + 1), text.find("\n", start + 1)
        return -1 if close < 0 or 0 <= line_end < close else close + 1
    search = start + 1
    while True:
        stop = _BASIC_STOP.search(text, search)
        if stop is None or stop.group() == "\n":
            return -1
        if stop.group() == "\\":
            search = stop.start() + 2
            continue
        return stop.start() + 1


# --- credentials ---------------------------------------------------------------------------------


def mask_url(text: str) -> str:
    """``https://user:secret@host`` -> ``https://user:***@host``; anything else unchanged."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def mask_settings(dumped: dict[str, Any]) -> dict[str, Any]:
    """A ``Settings.model_dump(mode="json")`` with every credential replaced by ``"***"``."""
    masked = dict(dumped)
    backends = []
    for entry in dumped.get("backends") or ():
        shown = dict(entry)
        if isinstance(shown.get("url"), str):
            shown["url"] = mask_url(shown["url"])
        for key in _SECRET_BACKEND_KEYS:
            if shown.get(key) is not None:
                shown[key] = MASK
        shown["headers"] = {name: MASK for name in shown.get("headers") or {}}
        backends.append(shown)
    masked["backends"] = backends
    return masked


def _may_show(loc: Sequence[str | int]) -> bool:
    """Whether the value at ``loc`` may appear in a message (never a credential)."""
    if loc and loc[0] == "backends":
        return len(loc) == 3 and str(loc[2]) in _SHOWN_BACKEND_KEYS
    return True


# --- names and suggestions -----------------------------------------------------------------------


def env_name(parts: Iterable[str | int]) -> str:
    """The environment variable for a dotted setting: ``("comfyui", "port")`` ->
    ``STORYCORE_COMFYUI__PORT``."""
    return ENV_PREFIX + "__".join(str(p).upper() for p in parts)


def closest(word: str, names: Iterable[str]) -> str | None:
    """The known name ``word`` is most likely a typo of, if any is close."""
    found = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return found[0] if found else None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The settings model that holds the keys at ``loc`` (``()`` = the root)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(part)
        current = _model_of(info.annotation) if info is not None else None
    return current


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):  # tuple[BackendSettings, ...], X | None
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _tables(model: type[BaseModel]) -> list[str]:
    """The top-level names that are written as tables (``[render]``, ``[[backends]]``)."""
    names = []
    for name, info in model.model_fields.items():
        origin = typing.get_origin(info.annotation)
        if _model_of(info.annotation) is not None or origin is dict:
            names.append(name)
    return names


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The top-level tables that environment variables reach key by key (not ``backends``)."""
    found = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found[name] = annotation
    return found


def _variable_meant(parts: list[str], model: type[BaseModel]) -> list[str] | None:
    head, sections = parts[0], _sections(model)
    if len(parts) == 1:
        for name, section in sections.items():
            # STORYCORE_COMFYUI_PORT: one underscore where two were meant
            if head.startswith(name + "_"):
                key = closest(head[len(name) + 1 :], section.model_fields)
                if key is not None:
                    return [name, key]
        # STORYCORE_PORT: a key that only one section has
        owners = [name for name, section in sections.items() if head in section.model_fields]
        if len(owners) == 1:
            return [owners[0], head]
    found = difflib.get_close_matches(head, list(model.model_fields), n=1, cutoff=0.75)
    if not found:
        return None
    guess = [found[0], *parts[1:]]
    if found[0] in sections and len(parts) == 2:
        guess[1] = closest(parts[1], sections[found[0]].model_fields) or parts[1]
    return guess


def unknown_variable(variable: str, dotted: str, model: type[BaseModel]) -> str:
    """The warning for a ``STORYCORE_*`` variable that names no setting, with the variable it
    was probably meant to be."""
    guess = _variable_meant(dotted.split("."), model)
    text = f"environment variable {variable} is not a StoryCore setting and is ignored"
    if guess is not None:
        return f"{text}; did you mean {env_name(guess)}?"
    return (
        f"{text} (settings are named {ENV_PREFIX}<SECTION>__<KEY>, e.g. "
        f"{env_name(('comfyui', 'port'))}; unset it to silence this warning)"
    )


# --- validation errors ---------------------------------------------------------------------------


def settings_error(
    exc: ValidationError,
    model: type[BaseModel],
    sources: Mapping[str, str],
    tables: Mapping[str, Sequence[str]],
) -> ConfigError:
    """One :class:`ConfigError` for every problem pydantic found, each naming where the value
    came from (the file, the environment variable, the command line) and what is wrong."""
    problems: list[tuple[str, str]] = []
    unknown = False
    for problem in exc.errors():
        loc = tuple(problem["loc"])
        origin = _origin(loc, sources, tables)
        if problem["type"] == "extra_forbidden":
            unknown = True
            problems.append((origin, _unknown_key(loc, problem.get("input"), model, origin)))
        else:
            problems.append((origin, _bad_value(loc, problem, model, origin)))
    origins = list(dict.fromkeys(origin for origin, _ in problems))
    if len(origins) == 1:
        where, message = origins[0], "; ".join(text for _, text in problems)
    else:
        where, message = "settings", "; ".join(f"{o}: {text}" for o, text in problems)
    fix = (
        "Correct the name, or remove it"
        if unknown
        else "Fix the value where it was set, or remove it to use the default"
    )
    return ConfigError(
        message,
        where=where,
        hint=f"{fix}; `storycore config show` lists every setting, its value and where it came "
        "from",
    )


def _origin(
    loc: Sequence[str | int], sources: Mapping[str, str], tables: Mapping[str, Sequence[str]]
) -> str:
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        probe = ".".join(parts[:end])
        if probe in sources:
            return sources[probe]
        if end == len(parts) and probe in tables:
            return " and ".join(tables[probe])
    dotted = ".".join(parts)
    below = [source for name, source in sources.items() if name.startswith(dotted + ".")]
    return " and ".join(dict.fromkeys(below)) if below else "the defaults"


def _variable(origin: str) -> str | None:
    prefix = "environment "
    return origin[len(prefix) :] if origin.startswith(prefix) else None


def _unknown_key(
    loc: tuple[str | int, ...], value: Any, model: type[BaseModel], origin: str
) -> str:
    parent, key = loc[:-1], str(loc[-1])
    holder = _model_at(model, parent)
    known = list(holder.model_fields) if holder is not None else []
    if not parent and isinstance(value, Mapping):
        guess = closest(key, _tables(model)) or closest(key, known)
    else:
        guess = closest(key, known)
    variable = _variable(origin)
    if variable is not None and not any(isinstance(p, int) for p in loc):
        text = f"`{'.'.join(map(str, loc))}` is not a known setting"
        return f"{text} (did you mean {env_name((*parent, guess))}?)" if guess else text
    if not parent:
        if isinstance(value, Mapping):
            text = f"[{key}] is not a known section"
            return f"{text} (did you mean [{guess}]?)" if guess else text
        text = f"`{key}` is not a known setting"
        return f"{text} (did you mean `{guess}`?)" if guess else text
    text = f"{_table_name(parent)} has no setting `{key}`"
    return f"{text} (did you mean `{guess}`?)" if guess else text


def _table_name(loc: Sequence[str | int]) -> str:
    if loc and loc[0] == "backends" and len(loc) > 1 and isinstance(loc[1], int):
        return f"[[backends]] entry {loc[1] + 1}"
    return "[" + ".".join(str(p) for p in loc) + "]"


def _bad_value(
    loc: tuple[str | int, ...], problem: Any, model: type[BaseModel], origin: str
) -> str:
    dotted = ".".join(str(p) for p in loc)
    kind = problem["type"]
    if kind in ("model_type", "model_attributes_type", "dict_type") and len(loc) == 1:
        section = _model_at(model, loc)
        example = next(iter(section.model_fields), "key") if section is not None else "<name>"
        if _variable(origin) is not None:
            return (
                f"`{dotted}` is a section, not one value: set one of its settings, e.g. "
                f"{env_name((dotted, example))}"
            )
        return (
            f"`{dotted}` is a section: write it as a table, [{dotted}] with {example} = ... below"
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = (
            "a [[backends]] entry (a table with url = ...)" if loc[0] == "backends" else "a table"
        )
        return f"`{dotted}` should be {what}"
    if kind == "missing":
        return f"{_table_name(loc[:-1])} needs `{loc[-1]}`"
    if kind in _TYPE_WORDS:
        words = _TYPE_WORDS[kind]
    elif kind == "string_pattern_mismatch":
        pattern = problem.get("ctx", {}).get("pattern", "")
        words = _PATTERN_WORDS.get(pattern, f"should match the pattern {pattern}")
    else:
        words = _words(str(problem["msg"]))
    shown = problem.get("input")
    if _may_show(loc) and not isinstance(shown, Mapping | list | tuple):
        got = mask_url(shown) if isinstance(shown, str) else shown
        return f"`{dotted}` {words} (got {toml_value(got) or 'nothing'})"
    return f"`{dotted}` {words}"


def _words(message: str) -> str:
    for prefix, plain in (("Input should be", "should be"), ("Value error, ", "is not valid: ")):
        if message.startswith(prefix):
            rest = message[len(prefix) :].lstrip()
            message = f"{plain} {rest[:1].lower()}{rest[1:]}".replace(":  ", ": ")
    return message[:1].lower() + message[1:]
