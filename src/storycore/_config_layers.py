"""Reading the settings layers: TOML files and ``STORYCORE_*`` variables, for
:mod:`storycore.config`.

A settings file is read only up to :data:`MAX_SETTINGS_BYTES` and checked for nesting before it
is parsed (a file nested 100000 deep is one clear error, not a ``RecursionError``); every
problem is a :class:`~storycore.errors.ConfigError` naming the file or the variable.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from storycore._config_text import ENV_PREFIX, toml_nesting_problem, unknown_variable
from storycore.errors import ConfigError

__all__ = [
    "MAX_SETTINGS_BYTES",
    "env_layer",
    "given_file",
    "read_toml",
    "read_toml_text",
    "user_config_path",
]

# A settings file is a few KiB; a larger one is refused before it is parsed.
MAX_SETTINGS_BYTES = 1024 * 1024


def user_config_path() -> Path:
    """The user's config file (platform config folder)."""
    import platformdirs

    return platformdirs.user_config_path("storycore") / "config.toml"


def given_file(path: Path) -> Path:
    """The settings file named with ``--config``: it must be there."""
    path = path.expanduser()
    if path.is_file():
        return path
    what = "is a folder, not a settings file" if path.is_dir() else "does not exist"
    raise ConfigError(
        f"the settings file given with --config {what}",
        where=str(path),
        hint=f"Check the path (a relative one starts from {Path.cwd()}), or leave out --config "
        f"to read the user config file {user_config_path()}",
    )


def read_toml(path: Path) -> dict[str, Any]:
    return read_toml_text(path)[1]


def read_toml_text(path: Path) -> tuple[str, dict[str, Any]]:
    """The text of a settings file and what it holds, from one bounded read (size, encoding,
    nesting and syntax checked, each with a clear error)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot be read ({exc.strerror})", where=str(path), hint="Check the file's permissions"
        ) from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise ConfigError(
            f"is larger than {MAX_SETTINGS_BYTES // 1024} KiB, far more than any settings file "
            "needs, and is not read",
            where=str(path),
            hint="Check that this is the settings file you meant",
        )
    try:
        # utf-8-sig: Notepad and other Windows editors may start the file with a byte-order mark
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})",
            where=str(path),
            hint="Save the file as UTF-8",
        ) from None
    nesting = toml_nesting_problem(text)
    if nesting is not None:
        raise ConfigError(
            nesting,
            where=str(path),
            hint="A settings file needs only a few levels ([section] and key = value); fix or "
            "remove this file",
        )
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"is not valid TOML: {_toml_problem(str(exc))}",
            where=str(path),
            hint="Fix the syntax there (text values need quotes, each key appears once, each "
            "[section] once)",
        ) from None


_TUPLE = re.compile(r"\('[^']*',?(?: '[^']*',?)*\)")
_TUPLE_PART = re.compile(r"'([^']*)'")
_TOML_PROBLEMS = {
    "Cannot overwrite a value": "this key was already set above",
    "Invalid value": 'this value is not valid (text needs quotes, e.g. sampler = "euler")',
    "Invalid statement": "this line is neither key = value nor a [section]",
}


def _toml_problem(message: str) -> str:
    """``"Invalid value (at line 3, column 9)"`` -> ``"line 3, column 9: this value is ..."``."""
    what, _, where = message.rpartition(" (at ")
    if not what:
        what, where = message, ""
    # tomllib names tables as Python tuples: "Cannot declare ('render',) twice"
    what = _TUPLE.sub(lambda m: "[" + ".".join(_TUPLE_PART.findall(m.group(0))) + "]", what)
    what = _TOML_PROBLEMS.get(what, what[:1].lower() + what[1:])
    if where.endswith(")"):
        return f"{where[:-1]}: {what}"
    return what


_LIST_FIELDS = {"comfyui.extra_args"}


def env_layer(
    env: Mapping[str, str], model: type[BaseModel]
) -> tuple[dict[str, tuple[Any, str]], list[str]]:
    """The ``STORYCORE_*`` variables as dotted settings, and a warning for each one that names
    no section (left over in a shell, or a typo): those are ignored, not fatal."""
    layer: dict[str, tuple[Any, str]] = {}
    warnings: list[str] = []
    for variable, raw in sorted(env.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        dotted = variable[len(ENV_PREFIX) :].lower().replace("__", ".")
        if not dotted:
            continue
        if dotted.partition(".")[0] not in model.model_fields:
            warnings.append(unknown_variable(variable, dotted, model))
            continue
        value: Any = raw
        if dotted == "backends":
            value = _parse_backends(raw, variable)
        elif dotted in _LIST_FIELDS and not raw.strip().startswith("["):
            try:
                value = shlex.split(raw)
            except ValueError as exc:  # "No closing quotation"
                raise ConfigError(
                    f"cannot be split into arguments ({str(exc).lower()})",
                    where=f"environment {variable}",
                    hint='Close the quote, or give a JSON list, e.g. ["--preview-method", "auto"]',
                ) from None
        elif raw.strip().startswith(("{", "[")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"is not valid JSON ({exc.msg} at column {exc.colno})",
                    where=f"environment {variable}",
                    hint='write tables and lists as JSON, e.g. {"name": "path"}',
                ) from None
        layer[dotted] = (value, variable)
    return layer, warnings


def _parse_backends(raw: str, variable: str) -> list[Any]:
    text = raw.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"is not a valid JSON list ({exc.msg} at column {exc.colno})",
                where=f"environment {variable}",
                hint='Use e.g. [{"url": "http://gpu1:8188"}] or comma-separated URLs',
            ) from None
        return list(parsed) if isinstance(parsed, list) else [parsed]
    return [{"url": part.strip()} for part in text.split(",") if part.strip()]
