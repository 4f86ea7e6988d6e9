"""Storyboard panels to ComfyUI graphs: building, user templates, preflight, complexity.

Typical use by the engine::

    built = build_panel_graph(panel, options, templates=templates, node_classes=object_info)
    names = {u.local_path: await upload(u.local_path) for u in built.uploads}
    graph = bind_uploads(built, names)
    hashes = {u.local_path: sha256_of(u.local_path) for u in built.uploads}
    key = workflow_fingerprint(built, hashes)

and before any of that, once for the whole project::

    report = preflight_panels(panels, object_info, models, options, templates)
    report.raise_for_problems()
"""

from storycore.workflows._complexity import (
    Calibration,
    GraphComplexity,
    MeasuredTiming,
    ProjectComplexity,
    analyze_graph,
    analyze_project,
)
from storycore.workflows._graph import (
    UPLOAD_PLACEHOLDER_PREFIX,
    BuiltGraph,
    GraphBuilder,
    NodeRef,
    UploadRole,
    UploadSpec,
    bind_uploads,
    canonical_json,
    graph_sha256,
    make_filename_prefix,
    safe_prefix_part,
    workflow_fingerprint,
)
from storycore.workflows._infer_bindings import infer_bindings
from storycore.workflows._infer_result import Bound, InferredBindings, NotBound
from storycore.workflows._node_packs import pack_for_class
from storycore.workflows._nodedefs import InputSpec, NodeCatalog, NodeDef, model_folder_for
from storycore.workflows._options import GraphOptions
from storycore.workflows._panel_graphs import build_panel_graph, panel_filename_prefix
from storycore.workflows._preflight import check_image_file, preflight_graphs, preflight_panels
from storycore.workflows._problems import PreflightReport, Problem
from storycore.workflows._templates import (
    InputTarget,
    WorkflowTemplate,
    apply_template,
    bound_values,
    load_template,
    template_from_data,
)
from storycore.workflows._ui_format import ui_to_api
from storycore.workflows._validate import find_cycles, types_match, validate_graph

__all__ = [
    "UPLOAD_PLACEHOLDER_PREFIX",
    "Bound",
    "BuiltGraph",
    "Calibration",
    "GraphBuilder",
    "GraphComplexity",
    "GraphOptions",
    "InferredBindings",
    "InputSpec",
    "InputTarget",
    "MeasuredTiming",
    "NodeCatalog",
    "NodeDef",
    "NodeRef",
    "NotBound",
    "PreflightReport",
    "Problem",
    "ProjectComplexity",
    "UploadRole",
    "UploadSpec",
    "WorkflowTemplate",
    "analyze_graph",
    "analyze_project",
    "apply_template",
    "bind_uploads",
    "bound_values",
    "build_panel_graph",
    "canonical_json",
    "check_image_file",
    "find_cycles",
    "graph_sha256",
    "infer_bindings",
    "load_template",
    "make_filename_prefix",
    "model_folder_for",
    "pack_for_class",
    "panel_filename_prefix",
    "preflight_graphs",
    "preflight_panels",
    "safe_prefix_part",
    "template_from_data",
    "types_match",
    "ui_to_api",
    "validate_graph",
    "workflow_fingerprint",
]
