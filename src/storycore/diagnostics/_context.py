"""Gather a :class:`DiagnosticContext` from what the caller has at hand (an adapter)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from storycore.diagnostics._model import DiagnosticContext
from storycore.platform import port_holder_async

__all__ = ["gather_context"]


async def gather_context(
    *,
    installed_models: Mapping[str, Sequence[str]] | None = None,
    node_classes: Collection[str] = (),
    ports: Collection[int] = (),
    can_failover: bool = False,
    allow_mock: bool = False,
) -> DiagnosticContext:
    """A context for :func:`classify`: installed models (e.g. ``ModelInventory.as_names()`` or
    the server's ``/models/{folder}`` lists), node classes (``/object_info`` keys), who holds
    each of ``ports`` (looked up off the event loop), and which fallbacks the caller can apply."""
    holders: dict[int, tuple[int, str]] = {}
    for port in ports:
        holder = await port_holder_async(port)
        if holder is not None:
            holders[port] = holder
    return DiagnosticContext(
        installed_models={k: list(v) for k, v in (installed_models or {}).items()},
        can_failover=can_failover,
        allow_mock=allow_mock,
        port_holders=holders,
        known_node_classes=frozenset(node_classes),
    )
