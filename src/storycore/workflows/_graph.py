"""A small builder for ComfyUI API-format graphs, and what a built graph carries (pure, no I/O).

An API-format graph is ``{node_id: {"class_type": str, "inputs": {...}, "_meta": {"title": str}}}``
where a linked input is ``[source_node_id, output_slot]``. :class:`GraphBuilder` hands out node ids
``"1"``, ``"2"``, ... in the order nodes are added, so the same build steps always give the same
ids, the same canonical JSON and the same sha256.

Images the graph needs (init, control, reference) are not known to the server yet when the graph
is built: their ``LoadImage`` input holds a placeholder and :class:`BuiltGraph` lists them as
:class:`UploadSpec`. The caller uploads each file, then :func:`bind_uploads` writes the names the
server returned into a copy of the graph.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storycore.errors import WorkflowError

__all__ = [
    "UPLOAD_PLACEHOLDER_PREFIX",
    "BuiltGraph",
    "GraphBuilder",
    "NodeRef",
    "UploadRole",
    "UploadSpec",
    "bind_uploads",
    "canonical_json",
    "graph_sha256",
    "is_link",
    "make_filename_prefix",
    "safe_prefix_part",
    "upload_placeholder",
    "workflow_fingerprint",
]

UploadRole = Literal["init", "control", "reference"]
UPLOAD_PLACEHOLDER_PREFIX = "storycore-upload://"
_UNSAFE_PART = re.compile(r"[^A-Za-z0-9_.-]+")


def is_link(value: Any) -> bool:
    """True when ``value`` has the shape of a link ``[node_id, slot]``."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


@dataclass(frozen=True)
class NodeRef:
    """A node added to a :class:`GraphBuilder`; ``out(slot)`` is a link to one of its outputs."""

    node_id: str
    class_type: str

    def out(self, slot: int = 0) -> list[Any]:
        return [self.node_id, slot]


class GraphBuilder:
    """Collects nodes with sequential string ids, in insertion order."""

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, Any]] = {}

    def add(self, class_type: str, inputs: Mapping[str, Any], title: str | None = None) -> NodeRef:
        node_id = str(len(self._nodes) + 1)
        node: dict[str, Any] = {"class_type": class_type, "inputs": dict(inputs)}
        node["_meta"] = {"title": title or class_type}
        self._nodes[node_id] = node
        return NodeRef(node_id, class_type)

    def set_input(self, ref: NodeRef, name: str, value: Any) -> None:
        self._nodes[ref.node_id]["inputs"][name] = value

    def build(self) -> dict[str, Any]:
        """A copy of the graph (nodes, their inputs and titles: what the builder edits)."""
        return {
            node_id: {**node, "inputs": dict(node["inputs"]), "_meta": dict(node["_meta"])}
            for node_id, node in self._nodes.items()
        }


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes every hash in this package is taken over.

    Text with a lone surrogate (a ``"\\ud800"`` escape in a received storyboard) has no UTF-8
    form: such data is written with every non-ASCII character escaped, which is still valid JSON
    of the same value and still the same bytes for the same data.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")


def graph_sha256(graph: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(graph)).hexdigest()


@dataclass(frozen=True)
class UploadSpec:
    """One local image the graph needs on the server, and the input that receives its name."""

    local_path: Path
    role: UploadRole
    node_id: str
    input_name: str
    placeholder: str


@dataclass(frozen=True)
class BuiltGraph:
    """A graph ready to upload-then-submit, plus what the engine and the preflight need to know."""

    shot_id: str
    graph: Mapping[str, Any]
    uploads: tuple[UploadSpec, ...]
    filename_prefix: str
    output_node_ids: tuple[str, ...]
    sha256: str
    template: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def json_bytes(self) -> bytes:
        """The graph's canonical JSON (what :attr:`sha256` is taken over)."""
        return canonical_json(self.graph)


def upload_placeholder(role: UploadRole, index: int, path: Path) -> str:
    """A placeholder that does not depend on where the project folder lives."""
    return f"{UPLOAD_PLACEHOLDER_PREFIX}{role}/{index}/{path.name}"


def bind_uploads(built: BuiltGraph, server_names: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of ``built.graph`` with every placeholder replaced by the name the server returned.

    ``server_names`` maps each upload's ``local_path`` to the name to put in the graph, e.g.
    ``"storycore/ref.png"`` for an upload into a subfolder. A missing entry is a
    :class:`WorkflowError`.
    """
    graph = dict(built.graph)  # nodes are copied below only where a name goes in
    for upload in built.uploads:
        name = server_names.get(upload.local_path)
        if not isinstance(name, str) or not name:
            raise WorkflowError(
                f"no server name for the {upload.role} image {upload.local_path}",
                where=f"shot {built.shot_id}, node {upload.node_id}.{upload.input_name}",
                hint="upload every file listed in BuiltGraph.uploads before binding",
            )
        node = graph[upload.node_id]
        graph[upload.node_id] = {**node, "inputs": {**node["inputs"], upload.input_name: name}}
    return graph


def workflow_fingerprint(built: BuiltGraph, image_hashes: Mapping[Path, str]) -> str:
    """The render-cache key: the graph (seed and every setting included) plus each image's hash.

    ``image_hashes`` maps each upload's ``local_path`` to the sha256 of its content, so the key
    changes when a reference image is edited in place but not when the project folder moves.
    """
    images = []
    for upload in built.uploads:
        digest = image_hashes.get(upload.local_path)
        if not digest:
            raise WorkflowError(
                f"no content hash for the {upload.role} image {upload.local_path}",
                where=f"shot {built.shot_id}, node {upload.node_id}.{upload.input_name}",
                hint="hash every file listed in BuiltGraph.uploads",
            )
        images.append([upload.node_id, upload.input_name, upload.role, digest])
    payload = {"graph": built.graph, "images": images, "version": 1}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def safe_prefix_part(text: str, *, fallback: str = "x") -> str:
    """``text`` reduced to ``[A-Za-z0-9_.-]`` with no leading dots (never ``.`` or ``..``)."""
    cleaned = _UNSAFE_PART.sub("_", text.strip()).lstrip(".")
    return cleaned[:80] or fallback


def make_filename_prefix(root: str, project_id: str, shot_id: str, version: int) -> str:
    """``<root>/<project>/<shot>/v<version>``: one subfolder per shot, never colliding."""
    parts = [
        safe_prefix_part(root, fallback="storycore"),
        safe_prefix_part(project_id, fallback="project"),
        safe_prefix_part(shot_id, fallback="shot"),
        f"v{max(0, int(version))}",
    ]
    return "/".join(parts)
