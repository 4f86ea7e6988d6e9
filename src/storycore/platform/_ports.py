"""Who listens on a TCP port (for "port 8188 is held by pid 1234 (nginx)")."""

from __future__ import annotations

import asyncio
import contextlib

import psutil

__all__ = ["port_holder", "port_holder_async"]


def port_holder(port: int) -> tuple[int, str] | None:
    """``(pid, process name)`` of the process listening on ``port``; ``None`` if nobody does or
    the OS will not say (other users' sockets need privileges on some systems)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            return (0, "unknown (no permission to see the process)")
        name = "unknown"
        with contextlib.suppress(psutil.Error):
            name = psutil.Process(conn.pid).name()
        return (conn.pid, name)
    return None


async def port_holder_async(port: int) -> tuple[int, str] | None:
    return await asyncio.to_thread(port_holder, port)
