"""Render profiles: named sets of render settings that override every panel's own values.

``[render]`` settings are defaults: a shot that sets ``steps`` keeps its steps. A profile is the
other way round: ``generate-images --profile draft`` renders every selected panel with the
profile's values, the shot's own included, so a draft pass of a whole board is quick whatever
the shots ask for. A value the profile leaves out is the shot's (or the ``[render]`` default).

Two profiles are built in:

- ``draft``: 8 steps, the long side at 512 pixels;
- ``final``: nothing overridden, the shot's own values (the name records that a render was the
  final pass).

``[profiles.NAME]`` tables in ``storycore.toml`` or the user config add profiles or change the
built-in ones (a ``[profiles.draft]`` table's values win over the built-in draft's). ``takes``
is how many takes ``--profile NAME`` renders of each panel when ``--takes`` is not given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from storycore.config import Settings

__all__ = [
    "BUILTIN_PROFILES",
    "ProfileSettings",
    "profile_names",
    "resolve_profile",
]

MAX_TAKES = 100  # takes of one panel in one run: a bound on a typo such as --takes 1000000


class ProfileSettings(BaseModel):
    """One render profile: each value set here wins over the shot's own and the ``[render]``
    default, for every panel rendered with ``--profile``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int | None = Field(default=None, ge=1, le=1000)
    render_long_side: int | None = Field(default=None, ge=64, le=8192)
    cfg: float | None = Field(default=None, ge=0, le=100)
    sampler: str | None = None
    scheduler: str | None = None
    checkpoint: str | None = None
    template: str | None = None
    takes: int | None = Field(default=None, ge=1, le=MAX_TAKES)


BUILTIN_PROFILES: dict[str, ProfileSettings] = {
    "draft": ProfileSettings(steps=8, render_long_side=512),
    "final": ProfileSettings(),
}


def _merged(settings: Settings) -> dict[str, ProfileSettings]:
    out = dict(BUILTIN_PROFILES)
    for name, own in settings.profiles.items():
        base = out.get(name)
        if base is None:
            out[name] = own
        else:
            values = base.model_dump()
            values.update(own.model_dump(exclude_unset=True))
            out[name] = ProfileSettings(**values)
    return out


def profile_names(settings: Settings) -> list[str]:
    """Every profile ``--profile`` accepts: the built-in ones first, then the settings' own."""
    return list(_merged(settings))


def resolve_profile(settings: Settings, name: str) -> ProfileSettings:
    """The profile called ``name`` (the built-in one with the settings' changes applied).
    Raises :class:`~storycore.errors.ConfigError` naming the profiles there are."""
    profiles = _merged(settings)
    if name in profiles:
        return profiles[name]
    from storycore.errors import ConfigError

    raise ConfigError(
        f"there is no render profile {name!r}; the profiles are {', '.join(profiles)}",
        where="--profile",
        hint="add a [profiles." + name + "] table to storycore.toml (steps, render_long_side, "
        "cfg, sampler, scheduler, checkpoint, template, takes), or pick one of those",
    )
