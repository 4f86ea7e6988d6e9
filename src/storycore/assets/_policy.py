"""The retention policy: which renders and temporary files ``storycore assets clean`` may remove.

Read from the optional ``[assets]`` table of the project's ``storycore.toml``::

    [assets]
    keep_newest = 3             # newest renders kept per shot (any storyboard version); omit = all
    remove_placeholders = true  # drop placeholder frames once a real render of the shot exists
    remove_orphans = true       # drop our own render files the manifest no longer lists
    orphan_grace_minutes = 10   # ...but only when older than this (a render may be finishing)
    temp_max_age_hours = 24     # partial downloads / cache files older than this go; omit = never
    temp_max_total_mb = 512     # then the oldest go until the rest fits; omit = no size cap

The shot's active render is always kept, whatever the policy says.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storycore._text import plural
from storycore.errors import ConfigError

__all__ = ["ASSETS_TABLE", "RetentionPolicy", "build_policy", "load_retention_policy"]

ASSETS_TABLE = "assets"
_PROJECT_CONFIG = "storycore.toml"


class RetentionPolicy(BaseModel):
    """How many renders to keep and how long temporary files may live."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    keep_newest: int | None = Field(default=None, ge=1, le=100_000)
    remove_placeholders: bool = True
    remove_orphans: bool = True
    orphan_grace_minutes: float = Field(default=10.0, ge=0, le=365 * 24 * 60)
    temp_max_age_hours: float | None = Field(default=24.0, ge=0, le=365 * 24)
    temp_max_total_mb: float | None = Field(default=512.0, ge=0, le=10**7)

    @property
    def temp_max_age_s(self) -> float | None:
        return None if self.temp_max_age_hours is None else self.temp_max_age_hours * 3600.0

    @property
    def temp_max_total_bytes(self) -> int | None:
        if self.temp_max_total_mb is None:
            return None
        return int(self.temp_max_total_mb * 1024 * 1024)


def load_retention_policy(
    project_dir: Path, overrides: Mapping[str, Any] | None = None
) -> RetentionPolicy:
    """The policy from ``<project_dir>/storycore.toml``'s ``[assets]`` table (defaults if absent).

    ``overrides`` (e.g. from command-line flags) win over the file; ``None`` values are ignored.
    Raises :class:`ConfigError` naming the field and the file for a bad value.
    """
    path = project_dir / _PROJECT_CONFIG
    table: dict[str, Any] = {}
    if path.is_file():
        from storycore._config_layers import read_toml

        raw = read_toml(path)  # size and nesting bounded, errors in words
        section = raw.get(ASSETS_TABLE, {})
        if not isinstance(section, dict):
            raise ConfigError(
                f"'{ASSETS_TABLE}' must be a table",
                where=f"{ASSETS_TABLE} in project {path}",
                hint="Write it as an [assets] section",
            )
        table.update(section)
    return build_policy(table, f"project {path}", overrides)


def build_policy(
    table: Mapping[str, Any], origin: str, overrides: Mapping[str, Any] | None = None
) -> RetentionPolicy:
    """Validate ``table`` (values from ``origin``) plus non-None ``overrides`` (command line)."""
    values = dict(table)
    sources = dict.fromkeys(values, origin)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "command line"
    try:
        return RetentionPolicy.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        loc = problem["loc"]
        name = ".".join(str(part) for part in loc) or ASSETS_TABLE
        where = sources.get(str(loc[0]) if loc else "", origin)
        more = len(exc.errors()) - 1
        extra = f" (and {plural(more, 'more problem')})" if more > 0 else ""
        raise ConfigError(
            f"{problem['msg'].lower()}, got {problem.get('input')!r}{extra}",
            where=f"{ASSETS_TABLE}.{name} in {where}",
            hint="Fix the value in the [assets] table of storycore.toml "
            f"(fields: {', '.join(RetentionPolicy.model_fields)})",
        ) from None
