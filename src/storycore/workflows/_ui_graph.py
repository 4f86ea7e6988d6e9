"""One graph of a UI-format workflow, read defensively: its nodes and its links (pure).

A workflow saved by the ComfyUI front end holds graphs in two places: the root (``nodes`` and
``links``) and each subgraph definition (``definitions.subgraphs[*]``, same fields). Links come
in two shapes, and both are read here:

* schema 0.4 (``"version": 0.4``, ``last_node_id``): ``[id, origin_id, origin_slot, target_id,
  target_slot, type]`` arrays;
* schema 1 (``"version": 1``, ``state``) and every subgraph definition: objects
  ``{id, origin_id, origin_slot, target_id, target_slot, type, parentId?}``.

(The two workflow schemas of ComfyUI_frontend
src/platform/workflow/validation/schemas/workflowSchema.ts @ d0a2959e.) Native
reroutes (``extra.reroutes``, a link's ``parentId``) only change how a link is drawn: the link
still runs from its origin node to its target node, so nothing here needs them.

Everything in the file is untrusted: ids and slots must be whole numbers of sane size, and an
error names the node (its execution id, type and title) and the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storycore.errors import TemplateError

__all__ = ["MAX_NODES", "Graph", "LinkRec", "UiErrors", "describe_node"]

# The subgraph input and output boxes of a definition (litegraph SUBGRAPH_INPUT_ID /
# SUBGRAPH_OUTPUT_ID; ComfyUI_frontend src/lib/litegraph/src/constants.ts).
IO_INPUT_ID = "-10"
IO_OUTPUT_ID = "-20"
MAX_NODES = 20_000  # after flattening: far past any real workflow, short of a memory bomb
_MAX_TEXT = 60
_MAX_ID = 100_000  # characters of a node id (ids are whole numbers; old files: any text)


@dataclass(frozen=True)
class LinkRec:
    """One link, whichever shape it was saved in."""

    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def describe_node(exec_id: str, node: Mapping[str, Any]) -> str:
    """``node 57:12 (KSampler, titled "Sampler")``: how every error names a node."""
    kind = node.get("type")
    title = node.get("title")
    parts = [_short(kind) if kind is not None else "no type"]
    if isinstance(title, str) and title:
        parts.append(f"titled {_short(title)!r}")
    return f"node {_short(exec_id)} ({', '.join(parts)})"


class UiErrors:
    """Builds the :class:`TemplateError` of one conversion (same file, same hint style)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str, hint: str = "re-save the workflow in ComfyUI") -> TemplateError:
        return TemplateError(message, where=self.source, hint=hint)

    def number(self, value: Any, what: str) -> int:
        """A link id or slot: a whole number (written as one, or as a short string of ASCII
        digits); anything else (``"²"``, 5000 digits, ``1e400``, ``true``) is a clear error."""
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 53:
            return value
        if isinstance(value, str) and value.isascii() and len(value) <= 15:
            digits = value[1:] if value.startswith("-") else value
            if digits.isdigit():
                return int(value)
        raise self.error(f"{what} in the UI workflow is {_short(value)}, not a whole number")

    def node_id(self, value: Any, what: str) -> str:
        """A node id as the API graph writes it (``"12"``); ids are whole numbers (or, in a few
        old files, short strings)."""
        if isinstance(value, str) and value and len(value) <= _MAX_ID:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self.error(f"{what} in the UI workflow is {_short(value)}, not a whole number")


class Graph:
    """The nodes and links of the root graph or of one subgraph definition."""

    def __init__(self, data: Mapping[str, Any], errors: UiErrors, what: str) -> None:
        self.what = what
        self.nodes: dict[str, Mapping[str, Any]] = {}
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list):
            raise errors.error(f"{what} has no 'nodes' list")
        for node in raw_nodes:
            if not isinstance(node, Mapping) or "id" not in node:
                raise errors.error(f"a node entry of {what} is not an object with an id")
            node_id = errors.node_id(node["id"], f"a node id of {what}")
            if node_id in self.nodes:
                raise errors.error(f"{what} has two nodes with id {node_id}")
            self.nodes[node_id] = node
        self.links: dict[int, LinkRec] = {}
        raw_links = data.get("links")
        if raw_links is None:
            raw_links = []
        if not isinstance(raw_links, list):
            raise errors.error(f"the 'links' of {what} is not a list")
        for link in raw_links:
            parsed = _parse_link(link, errors, what)
            if parsed is not None:
                self.links[parsed[0]] = parsed[1]


def _parse_link(link: Any, errors: UiErrors, what: str) -> tuple[int, LinkRec] | None:
    if isinstance(link, list):
        if len(link) < 5:
            raise errors.error(f"a link of {what} has fewer than 5 fields: {_short(link)}")
        fields: Sequence[Any] = link
        link_id, origin, o_slot, target, t_slot = fields[:5]
        kind = fields[5] if len(fields) > 5 else "*"
    elif isinstance(link, Mapping):
        if "id" not in link:
            raise errors.error(f"a link of {what} has no id")
        link_id, origin, o_slot = link["id"], link.get("origin_id"), link.get("origin_slot")
        target, t_slot, kind = link.get("target_id"), link.get("target_slot"), link.get("type")
    elif link is None:
        return None  # removed links are saved as null by some old front ends
    else:
        raise errors.error(f"a link of {what} is neither a list nor an object: {_short(link)}")
    rec = LinkRec(
        origin_id=errors.node_id(origin, f"the origin node of link {_short(link_id)}"),
        origin_slot=errors.number(o_slot, f"the origin slot of link {_short(link_id)}"),
        target_id=errors.node_id(target, f"the target node of link {_short(link_id)}"),
        target_slot=errors.number(t_slot, f"the target slot of link {_short(link_id)}"),
        type=kind if isinstance(kind, str) else "*",
    )
    return errors.number(link_id, "a link id"), rec


def slot_list(node: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A node's ``inputs`` or ``outputs``, keeping positions (a bad entry becomes ``{}``)."""
    raw = node.get(key)
    if not isinstance(raw, list):
        return []
    return [entry if isinstance(entry, Mapping) else {} for entry in raw]


def node_mode(node: Mapping[str, Any]) -> int:
    mode = node.get("mode", 0)
    return mode if isinstance(mode, int) and not isinstance(mode, bool) else 0


def types_connect(a: Any, b: Any) -> bool:
    """LiteGraph.isValidConnection: ``*``/empty match anything; comma lists; no case.

    (ComfyUI_frontend src/lib/litegraph/src/LiteGraphGlobal.ts ``isValidConnection``.)
    """
    a_text = "" if a in (None, 0, "*") else str(a)
    b_text = "" if b in (None, 0, "*") else str(b)
    if not a_text or not b_text or a_text == b_text:
        return True
    a_parts = [p.strip().lower() for p in a_text.split(",")]
    b_parts = [p.strip().lower() for p in b_text.split(",")]
    return any(x in ("", "*") or y in ("", "*") or x == y for x in a_parts for y in b_parts)
