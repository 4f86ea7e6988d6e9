"""What ``template convert`` and ``template add`` share: reading a workflow (or node list) file
with a size bound, and finding the node list (``/object_info``) to convert a UI workflow with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storycore.config import Settings
    from storycore.workflows import NodeCatalog

__all__ = ["MAX_WORKFLOW_BYTES", "node_catalog", "read_json_file", "shipped_catalog"]

MAX_WORKFLOW_BYTES = 32 * 1024 * 1024
SHIPPED = "the node list of ComfyUI 0.3.64 shipped with StoryCore (core nodes, IPAdapter plus, "
SHIPPED += "ControlNet aux)"


def read_json_file(path: Path, limit: int, what: str, hint: str) -> tuple[bytes, Any]:
    """The bytes and the JSON of a file of at most ``limit`` bytes, or a TemplateError naming it
    (the file is untrusted: a project's or a download's)."""
    from storycore.errors import TemplateError

    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise TemplateError(
            f"cannot read the {what} ({exc.strerror or exc})", where=str(path), hint=hint
        ) from None
    if len(raw) > limit:
        raise TemplateError(
            f"the {what} is larger than {limit // 2**20} MiB and is not read",
            where=str(path),
            hint=hint,
        )
    try:
        return raw, json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        problem = f"not valid JSON ({exc})"
    except RecursionError:
        problem = "nested too deeply (arrays or objects inside one another)"
    raise TemplateError(f"the {what} is {problem}", where=str(path), hint=hint)


async def _server_object_info(spec: Any, settings: Settings, limit: float) -> dict[str, Any]:
    from storycore.engine import client_for
    from storycore.errors import ServerTimeout

    try:
        async with asyncio.timeout(limit), client_for(spec, settings) as client:
            return await client.object_info() or {}
    except TimeoutError as exc:
        if isinstance(exc, ServerTimeout):
            raise
        raise ServerTimeout(
            f"the server did not give its node list within {limit:g} s",
            where=spec.url,
            hint="check that ComfyUI is running, or raise --timeout",
        ) from None


def shipped_catalog() -> NodeCatalog:
    """The recorded node list of ComfyUI 0.3.64 (core nodes and the two recorded packs)."""
    from storycore.emulator._nodedefs import load_data_json
    from storycore.workflows import NodeCatalog

    return NodeCatalog(
        load_data_json("object_info.json"), load_data_json("object_info_custom_nodes.json")
    )


def node_catalog(
    settings: Settings, backend: str | None, limit: float
) -> tuple[NodeCatalog, str | None, list[str]]:
    """(catalog, the URL it came from or None for :func:`shipped_catalog`, why each configured
    server gave none). A server named with ``--backend`` must answer (its error is raised);
    otherwise the first configured server that answers within ``limit`` seconds, else the
    shipped list."""
    from storycore.engine import backend_specs
    from storycore.errors import ComfyUIError
    from storycore.workflows import NodeCatalog

    specs = backend_specs(settings, [backend] if backend else [])
    if backend:
        info = asyncio.run(_server_object_info(specs[0], settings, limit))
        return NodeCatalog(info), specs[0].url, []
    problems: list[str] = []
    for spec in specs:
        try:
            info = asyncio.run(_server_object_info(spec, settings, limit))
        except ComfyUIError as err:
            problems.append(f"{spec.url} ({err.message})")
            continue
        return NodeCatalog(info), spec.url, []
    return shipped_catalog(), None, problems
