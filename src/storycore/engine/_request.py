"""What ``generate-images`` asks the engine for: :class:`RenderRequest`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["RenderRequest"]


@dataclass(frozen=True)
class RenderRequest:
    """What to render and how (the ``generate-images`` flags).

    ``fallback``: what the user asked for when no server answers (``None``: nothing, and then
    placeholders only when no server was named). ``profile``: a render profile
    (``storycore._profiles``) whose values win over the shots'; ``takes`` (``None``: the
    profile's, else 1), ``new_takes``, ``approved``, ``rejected``: which takes to render
    (:mod:`storycore.engine._takes`). ``desktop_port``: ComfyUI Desktop's port, tried
    when ``comfyui.port`` does not answer (``storycore.engine.desktop_port_for``; ``None``: not).
    """

    project: Path
    shots: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    mock: bool = False
    fallback: Literal["mock", "fail"] | None = None
    desktop_port: int | None = None
    force: bool = False
    dry_run: bool = False
    profile: str | None = None
    takes: int | None = None
    new_takes: int = 0
    approved: bool = False
    rejected: bool = False
