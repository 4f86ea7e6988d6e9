"""The preflight: build every panel's graph and find every problem before anything is submitted.

:func:`preflight_panels` returns one :class:`PreflightReport` for the whole project. It reads the
upload images from disk (exists, decodes) unless ``check_files=False``; everything else is pure.

What ``/object_info`` says of each class counts too (ComfyUI server.py @ 5e14d797 ``node_info``):
a ``deprecated`` class is a warning naming the node; an ``api_node`` (it calls a paid online API
and bills the user's comfy.org account) is refused unless ``allow_api_nodes`` (the user-only
setting ``comfyui.allow_api_nodes``: a received project must not spend the user's money).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from storycore.errors import WorkflowError
from storycore.panels import Panel
from storycore.workflows._complexity import (
    Calibration,
    GraphComplexity,
    MeasuredTiming,
    analyze_graph,
    summarize_panels,
)
from storycore.workflows._graph import BuiltGraph, UploadSpec
from storycore.workflows._node_packs import PACK_CLASSES
from storycore.workflows._nodedefs import NodeCatalog, NodeDef
from storycore.workflows._options import GraphOptions
from storycore.workflows._panel_graphs import build_panel_graph
from storycore.workflows._problems import PreflightReport, Problem
from storycore.workflows._templates import WorkflowTemplate
from storycore.workflows._validate import validate_graph

__all__ = ["WEIGHT_FREE_PREPROCESSORS", "check_image_file", "preflight_graphs", "preflight_panels"]

# comfyui_controlnet_aux nodes that need no downloaded weights (the others fetch them on first use)
WEIGHT_FREE_PREPROCESSORS = frozenset(
    {"CannyEdgePreprocessor", "BinaryPreprocessor", "ColorPreprocessor", "ImageLuminanceDetector"}
)
_AUX_CLASSES = frozenset(PACK_CLASSES.get("comfyui_controlnet_aux", ()))


def check_image_file(path: Path) -> str | None:
    """None when ``path`` is a readable image; otherwise why not (reads the file)."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return "unreadable"
    return None


def _image_problems(
    shot_id: str, uploads: Iterable[UploadSpec], cache: dict[Path, str | None]
) -> list[Problem]:
    problems = []
    for upload in uploads:
        if upload.local_path not in cache:
            cache[upload.local_path] = check_image_file(upload.local_path)
        status = cache[upload.local_path]
        if status is None:
            continue
        problems.append(
            Problem(
                f"image_{status}",
                f"the {upload.role} image {upload.local_path} "
                + ("does not exist" if status == "missing" else "is not an image Pillow can read"),
                shot_id=shot_id,
                node_id=upload.node_id,
                class_type="LoadImage",
                input_name=upload.input_name,
                hint="fix the path in the storyboard" if status == "missing" else "re-export it",
            )
        )
    return problems


def _node_title(node: Mapping[str, Any]) -> str | None:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title[:100] if isinstance(title, str) and title else None


def _class_problems(
    shot_id: str, graph: Mapping[str, Any], catalog: NodeCatalog, allow_api_nodes: bool
) -> list[Problem]:
    """Deprecated classes (a warning) and paid API nodes (an error unless allowed)."""
    problems: list[Problem] = []
    for node_id, node in graph.items():
        cls = node.get("class_type") if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or not isinstance(cls, str) or cls not in catalog:
            continue
        try:
            spec: NodeDef = catalog[cls]
        except WorkflowError:
            continue  # an unreadable class entry is validate_graph's to report
        title = _node_title(node)
        titled = f", titled {title!r}," if title else ""
        if spec.api_node and not allow_api_nodes:
            problems.append(
                Problem(
                    "paid_api_node",
                    f"{cls}{titled} is one of ComfyUI's API nodes: it calls a paid online "
                    "service and bills your comfy.org account, which StoryCore does not do "
                    "unless you allow it",
                    shot_id=shot_id,
                    node_id=str(node_id),
                    class_type=cls,
                    hint="to allow it, set comfyui.allow_api_nodes = true in your own settings "
                    "(`storycore config path` shows the file; a project cannot set it)",
                )
            )
        if spec.deprecated:
            problems.append(
                Problem(
                    "deprecated_node",
                    f"{cls}{titled} is deprecated on this server: a later ComfyUI may drop it",
                    shot_id=shot_id,
                    node_id=str(node_id),
                    class_type=cls,
                    hint="replace it in the template with the node that supersedes it",
                    severity="warning",
                )
            )
    return problems


def preflight_graphs(
    built: Iterable[BuiltGraph],
    object_info: NodeCatalog | Mapping[str, Any],
    models: Mapping[str, Sequence[str]],
    *,
    check_files: bool = True,
    system_stats: Mapping[str, Any] | None = None,
    timings: Iterable[MeasuredTiming] = (),
    extra_problems: Iterable[Problem] = (),
    shots: Sequence[str] | None = None,
    keep_graphs: bool = True,
    allow_api_nodes: bool = False,
) -> PreflightReport:
    """Validate already built graphs as one project, in one pass over ``built`` (which may be
    a generator that builds each graph as it is asked for). ``keep_graphs=False`` leaves the
    graphs out of the report, so a long board is checked in flat memory. Paid API nodes are
    refused unless ``allow_api_nodes``."""
    catalog = NodeCatalog.coerce(object_info)
    cal = Calibration.from_system_stats(system_stats, timings)
    analyzed: list[GraphComplexity] = []
    seen_shots: list[str] = []
    graphs: dict[str, BuiltGraph] = {}
    problems: list[Problem] = list(extra_problems)
    image_cache: dict[Path, str | None] = {}
    prefixes: dict[str, str] = {}
    aux_users: dict[str, list[str]] = {}
    for item in built:
        seen_shots.append(item.shot_id)
        analyzed.append(analyze_graph(item.shot_id, item.graph, cal))
        if keep_graphs:
            graphs[item.shot_id] = item
        problems.extend(validate_graph(item.graph, catalog, models, shot_id=item.shot_id))
        problems.extend(_class_problems(item.shot_id, item.graph, catalog, allow_api_nodes))
        problems.extend(
            Problem("graph_note", note, shot_id=item.shot_id, severity="warning")
            for note in item.warnings
        )
        if check_files:
            problems.extend(_image_problems(item.shot_id, item.uploads, image_cache))
        owner = prefixes.setdefault(item.filename_prefix, item.shot_id)
        if owner != item.shot_id:
            problems.append(
                Problem(
                    "filename_prefix_collision",
                    f"outputs would go to {item.filename_prefix!r}, like those of shot {owner}",
                    shot_id=item.shot_id,
                    node_id=item.output_node_ids[0] if item.output_node_ids else None,
                    hint="give the shots distinct ids (or versions)",
                )
            )
        for node in item.graph.values():
            cls = node.get("class_type")
            if cls in _AUX_CLASSES and cls not in WEIGHT_FREE_PREPROCESSORS:
                users = aux_users.setdefault(cls, [])
                if item.shot_id not in users:
                    users.append(item.shot_id)
    for cls, users in sorted(aux_users.items()):
        problems.append(
            Problem(
                "preprocessor_downloads",
                f"{cls} downloads its weights on first use (used by shot(s) "
                f"{', '.join(users)}); with no internet the render fails after ~25 s",
                shot_id=users[0],
                class_type=cls,
                hint="run it once while online, or give preprocessed control images and turn "
                "preprocessing off",
                severity="warning",
            )
        )
    return PreflightReport(
        problems=tuple(problems),
        shots=tuple(shots if shots is not None else seen_shots),
        graphs=graphs,
        complexity=summarize_panels(analyzed, cal),
    )


def preflight_panels(
    panels: Sequence[Panel],
    object_info: NodeCatalog | Mapping[str, Any],
    models: Mapping[str, Sequence[str]],
    options: GraphOptions | None = None,
    templates: Mapping[str, WorkflowTemplate] | None = None,
    *,
    check_files: bool = True,
    system_stats: Mapping[str, Any] | None = None,
    timings: Iterable[MeasuredTiming] = (),
    allow_api_nodes: bool = False,
) -> PreflightReport:
    """Build and check every panel; one report for the whole project (never raises for problems).

    ``object_info`` is the server's ``/object_info`` (dict or :class:`NodeCatalog`), ``models``
    maps a model folder (``checkpoints``, ``loras``, ``controlnet``, ``ipadapter``,
    ``clip_vision`` ...) to the files ``GET /models/{folder}`` lists. Call
    ``report.raise_for_problems()`` to turn errors into :class:`PreflightFailed`.
    """
    catalog = NodeCatalog.coerce(object_info)
    opts = options or GraphOptions()
    built: list[BuiltGraph] = []
    failures: list[Problem] = []
    for panel in panels:
        try:
            built.append(build_panel_graph(panel, opts, templates=templates, node_classes=catalog))
        except WorkflowError as exc:
            failures.append(
                Problem(
                    "build_failed",
                    exc.message if not exc.where else f"{exc.where}: {exc.message}",
                    shot_id=panel.shot_id,
                    hint=exc.hint,
                )
            )
    return preflight_graphs(
        built,
        catalog,
        models,
        check_files=check_files,
        system_stats=system_stats,
        timings=timings,
        extra_problems=failures,
        shots=[p.shot_id for p in panels],
        allow_api_nodes=allow_api_nodes,
    )
