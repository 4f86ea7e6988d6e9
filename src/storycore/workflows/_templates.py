"""User workflow templates: a ComfyUI workflow plus bindings saying where panel values go.

A binding file (TOML or JSON) names the workflow file (API format, or UI format converted with the
server's ``/object_info``) and, for each panel value, the node inputs that receive it. A node is
named by its id or its title (``_meta.title`` / the UI title)::

    name = "sdxl-basic"
    workflow = "sdxl_basic.api.json"

    [bindings]
    prompt = "Positive.text"                  # "<node title or id>.<input>"
    seed = ["KSampler.seed", { node = "12", input = "noise_seed" }]
    references = ["Character reference"]      # LoadImage nodes; input defaults to "image"
    [bindings.controls]
    pose = ["Pose image"]

Inputs that are not bound keep the template's values. When ``filename_prefix`` is not bound, every
``SaveImage`` node gets the deterministic per-shot prefix so outputs never collide.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycore._config_text import toml_nesting_problem
from storycore._project_trust import REFERENCE_HINT, outside_reach, outside_words
from storycore._text import node_sort_key
from storycore.errors import TemplateError
from storycore.panels import CONTROL_KINDS, Panel
from storycore.workflows._graph import (
    BuiltGraph,
    UploadRole,
    UploadSpec,
    graph_sha256,
    is_link,
    upload_placeholder,
)
from storycore.workflows._nodedefs import NodeCatalog
from storycore.workflows._options import GraphOptions
from storycore.workflows._ui_format import is_api_format, is_ui_format, ui_to_api

__all__ = [
    "IMAGE_BINDINGS",
    "VALUE_BINDINGS",
    "InputTarget",
    "WorkflowTemplate",
    "apply_template",
    "bound_values",
    "load_template",
    "template_from_data",
]

VALUE_BINDINGS: tuple[str, ...] = (
    "prompt",
    "negative",
    "seed",
    "width",
    "height",
    "steps",
    "cfg",
    "denoise",
    "filename_prefix",
    "checkpoint",
    "sampler",
    "scheduler",
)
IMAGE_BINDINGS: tuple[str, ...] = ("references", "init_image", "controls")
_INT_FIELDS = frozenset({"seed", "width", "height", "steps"})
_FLOAT_FIELDS = frozenset({"cfg", "denoise"})
_OUTPUT_CLASSES_FALLBACK = frozenset({"SaveImage", "PreviewImage", "SaveImageWebsocket"})


@dataclass(frozen=True)
class InputTarget:
    """One node input a binding writes to; ``spec`` is how the user wrote it."""

    node_id: str
    input: str
    spec: str


@dataclass(frozen=True)
class WorkflowTemplate:
    """A user workflow in API format, with its resolved bindings."""

    name: str
    source: str
    graph: Mapping[str, Any]
    values: Mapping[str, tuple[InputTarget, ...]]
    references: tuple[InputTarget, ...] = ()
    init_image: tuple[InputTarget, ...] = ()
    controls: Mapping[str, tuple[InputTarget, ...]] = field(default_factory=dict)
    output_node_ids: tuple[str, ...] = ()


class _Resolver:
    def __init__(self, graph: Mapping[str, Any], catalog: NodeCatalog | None, where: str) -> None:
        self.graph = graph
        self.catalog = catalog
        self.where = where

    def error(self, binding: str, message: str, hint: str) -> TemplateError:
        return TemplateError(message, where=f"{self.where}, binding {binding}", hint=hint)

    def node_id(self, binding: str, node: str) -> str:
        if node in self.graph:
            return node
        matches = [i for i, n in self.graph.items() if _title(n) == node]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise self.error(
                binding,
                f"the title {node!r} names {len(matches)} nodes ({', '.join(sorted(matches))})",
                "give the nodes different titles or bind by node id",
            )
        titles = ", ".join(sorted({repr(_title(n)) for n in self.graph.values()}))
        ids = ", ".join(sorted(self.graph, key=node_sort_key))
        raise self.error(
            binding,
            f"no node has the id or title {node!r}",
            f"use a node id ({ids}) or a title ({titles})",
        )

    def target(self, binding: str, spec: Any, default_input: str | None) -> InputTarget:
        if isinstance(spec, Mapping):
            node, name = spec.get("node"), spec.get("input", default_input)
            text = f"{node}.{name}"
        elif isinstance(spec, str):
            text = spec
            if default_input is not None and (spec in self.graph or self._title_exists(spec)):
                node, name = spec, default_input
            elif "." in spec:
                node, name = spec.rsplit(".", 1)
            else:
                node, name = spec, default_input
        else:
            raise self.error(
                binding,
                f"a target must be a text or a table, got {spec!r}",
                'write "<node title or id>.<input>" or { node = "...", input = "..." }',
            )
        if not isinstance(node, str) or not node or not isinstance(name, str) or not name:
            raise self.error(
                binding,
                f"target {text!r} does not name both a node and an input",
                'write "<node title or id>.<input>" or { node = "...", input = "..." }',
            )
        node_id = self.node_id(binding, node)
        self.check_input(binding, node_id, name)
        return InputTarget(node_id=node_id, input=name, spec=text)

    def _title_exists(self, text: str) -> bool:
        return any(_title(n) == text for n in self.graph.values())

    def check_input(self, binding: str, node_id: str, name: str) -> None:
        node = self.graph[node_id]
        class_type = str(node.get("class_type"))
        known = set(node.get("inputs") or {})
        if self.catalog is not None and class_type in self.catalog:
            known |= set(self.catalog[class_type].inputs)
        if name not in known:
            raise self.error(
                binding,
                f"node {node_id} ({class_type}) has no input {name!r}",
                f"use one of: {', '.join(sorted(known)) or 'none'}",
            )

    def targets(
        self, binding: str, spec: Any, default_input: str | None
    ) -> tuple[InputTarget, ...]:
        items = spec if isinstance(spec, list) else [spec]
        if not items:
            raise self.error(binding, "the binding lists no target", "name at least one node")
        return tuple(self.target(binding, item, default_input) for item in items)


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, Mapping) else None
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) else None


def template_from_data(
    name: str,
    workflow: Any,
    bindings: Mapping[str, Any],
    *,
    object_info: NodeCatalog | Mapping[str, Any] | None = None,
    source: str = "<template>",
) -> WorkflowTemplate:
    """Build a template from an already-parsed workflow and bindings table (pure)."""
    catalog = NodeCatalog.coerce(object_info) if object_info is not None else None
    if is_ui_format(workflow):
        if catalog is None:
            raise TemplateError(
                "a UI-format workflow needs the server's /object_info to be converted",
                where=source,
                hint="connect to the server first, or export the workflow with 'Export (API)'",
            )
        graph = ui_to_api(workflow, catalog, source)
    elif is_api_format(workflow):
        graph = copy.deepcopy(dict(workflow))
    else:
        raise TemplateError(
            "the workflow is neither ComfyUI API format nor UI format",
            where=source,
            hint="export it from ComfyUI with 'Export (API)' or 'Save'",
        )
    for node_id, node in graph.items():
        if not isinstance(node.get("inputs", {}), Mapping):
            raise TemplateError(
                f"node {node_id} has no inputs object", where=source, hint="re-export it"
            )
        node.setdefault("inputs", {})
    if not isinstance(bindings, Mapping):
        raise TemplateError("bindings must be a table", where=source, hint="see examples/")
    resolver = _Resolver(graph, catalog, source)
    unknown = sorted(set(bindings) - set(VALUE_BINDINGS) - set(IMAGE_BINDINGS))
    if unknown:
        raise TemplateError(
            f"unknown binding {unknown[0]!r}",
            where=f"{source}, binding {unknown[0]}",
            hint=f"known bindings: {', '.join(VALUE_BINDINGS + IMAGE_BINDINGS)}",
        )
    values = {
        key: resolver.targets(key, bindings[key], None) for key in VALUE_BINDINGS if key in bindings
    }
    controls_spec = bindings.get("controls") or {}
    if not isinstance(controls_spec, Mapping):
        raise TemplateError(
            "controls must be a table of kind = targets",
            where=f"{source}, binding controls",
            hint=f"kinds: {', '.join(CONTROL_KINDS)}",
        )
    controls: dict[str, tuple[InputTarget, ...]] = {}
    for kind, spec in controls_spec.items():
        if kind not in CONTROL_KINDS:
            raise TemplateError(
                f"unknown control kind {kind!r}",
                where=f"{source}, binding controls.{kind}",
                hint=f"kinds: {', '.join(CONTROL_KINDS)}",
            )
        controls[kind] = resolver.targets(f"controls.{kind}", spec, "image")
    if catalog is not None:
        outputs = [i for i, n in graph.items() if _is_output(n, catalog)]
    else:
        outputs = [i for i, n in graph.items() if n.get("class_type") in _OUTPUT_CLASSES_FALLBACK]
    return WorkflowTemplate(
        name=name,
        source=source,
        graph=graph,
        values=values,
        references=resolver.targets("references", bindings["references"], "image")
        if "references" in bindings
        else (),
        init_image=resolver.targets("init_image", bindings["init_image"], "image")
        if "init_image" in bindings
        else (),
        controls=controls,
        output_node_ids=tuple(sorted(outputs, key=node_sort_key)),
    )


def _is_output(node: Mapping[str, Any], catalog: NodeCatalog) -> bool:
    class_type = node.get("class_type")
    return isinstance(class_type, str) and class_type in catalog and catalog[class_type].output_node


def _read_structured(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TemplateError(
            f"cannot read the file ({reason or exc})",
            where=str(path),
            hint="check the path in the template declaration",
        ) from None
    kind = path.suffix.lstrip(".").upper() or "JSON"
    nesting = toml_nesting_problem(text) if kind == "TOML" else None
    try:
        if nesting is None and kind == "TOML":
            return tomllib.loads(text)
        if nesting is None:
            return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(
            f"the file is not valid {kind} ({exc})", where=str(path), hint="fix the syntax error"
        ) from None
    except RecursionError:
        nesting = "is nested too deeply (arrays or objects inside one another)"
    raise TemplateError(
        f"the file {nesting}", where=str(path), hint="export the workflow from ComfyUI again"
    )


def load_template(
    binding_file: Path,
    object_info: NodeCatalog | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    confined_to: Sequence[Path] | None = None,
) -> WorkflowTemplate:
    """Read a binding file (TOML or JSON) and the workflow it names (relative to it).

    ``confined_to`` (the project folder and the user's reference folders, for a binding file
    that is project content): the workflow must really lie (links followed) inside one of
    them."""
    data = _read_structured(binding_file)
    where = str(binding_file)
    if not isinstance(data, Mapping):
        raise TemplateError("the binding file must hold a table", where=where, hint="see examples/")
    workflow_name = data.get("workflow")
    if not isinstance(workflow_name, str) or not workflow_name:
        raise TemplateError(
            "the binding file names no workflow",
            where=f"{where}, field workflow",
            hint='add workflow = "<file exported from ComfyUI>.json"',
        )
    if confined_to:
        root, *allowed = confined_to
        leads = outside_reach(root, binding_file.parent / workflow_name, allowed)
        if leads is not None:
            raise TemplateError(
                outside_words("workflow", workflow_name, root, leads),
                where=f"{where}, field workflow",
                hint=REFERENCE_HINT,
            )
    workflow_path = (binding_file.parent / workflow_name).resolve()
    workflow = _read_structured(workflow_path)
    return template_from_data(
        name or str(data.get("name") or binding_file.stem.split(".")[0]),
        workflow,
        data.get("bindings") or {},
        object_info=object_info,
        source=where,
    )


def _panel_value(key: str, panel: Panel, prefix: str, denoise: float) -> Any:
    value: Any = {
        "prompt": panel.positive,
        "negative": panel.negative,
        "seed": panel.seed,
        "width": panel.width,
        "height": panel.height,
        "steps": panel.steps,
        "cfg": panel.cfg,
        "denoise": denoise,
        "filename_prefix": prefix,
        "checkpoint": panel.checkpoint,
        "sampler": panel.sampler,
        "scheduler": panel.scheduler,
    }[key]
    if key in _INT_FIELDS:
        return int(value)
    if key in _FLOAT_FIELDS:
        return float(value)
    return value


def apply_template(template: WorkflowTemplate, panel: Panel, options: GraphOptions) -> BuiltGraph:
    """Fill a template with a panel's values (pure). Unbound inputs keep the template's values."""
    from storycore.workflows._panel_graphs import panel_filename_prefix

    graph = copy.deepcopy(dict(template.graph))
    prefix = panel_filename_prefix(panel, options)
    warnings: list[str] = []
    denoise = panel.denoise
    if panel.init_image is not None and template.init_image and denoise >= 1.0:
        denoise = options.img2img_denoise  # an init image with a full denoise would be ignored
    for key, targets in template.values.items():
        for target in targets:
            value = _panel_value(key, panel, prefix, denoise)
            graph[target.node_id]["inputs"][target.input] = value
    if "filename_prefix" not in template.values:
        saves = [i for i, n in graph.items() if n.get("class_type") == "SaveImage"]
        for node_id in saves:
            graph[node_id]["inputs"]["filename_prefix"] = prefix
        if not saves:
            warnings.append(
                f"template {template.name}: no filename_prefix binding and no SaveImage node; "
                "outputs of different shots may collide"
            )
    uploads: list[UploadSpec] = []

    def bind_images(
        role: UploadRole, label: str, paths: Sequence[Path], targets: Sequence[Any]
    ) -> None:
        for index, path in enumerate(paths[: len(targets)]):
            target = targets[index]
            placeholder = upload_placeholder(role, index, path)
            graph[target.node_id]["inputs"][target.input] = placeholder
            uploads.append(UploadSpec(path, role, target.node_id, target.input, placeholder))
        if len(paths) > len(targets):
            warnings.append(
                f"template {template.name} binds {len(targets)} {label} image(s); "
                f"{len(paths) - len(targets)} of the shot's {label} image(s) are not used"
            )
        elif len(targets) > len(paths) and paths:
            warnings.append(
                f"template {template.name}: {len(targets) - len(paths)} {label} input(s) keep "
                "the template's images"
            )

    bind_images("reference", "reference", panel.references, template.references)
    if panel.init_image is not None:
        bind_images("init", "init", [panel.init_image], template.init_image)
    for kind in CONTROL_KINDS:
        paths = [c.path for c in panel.controls if c.kind == kind]
        bind_images("control", f"{kind} control", paths, template.controls.get(kind, ()))
    if panel.loras or panel.vae:
        warnings.append(
            f"template {template.name}: the shot's LoRAs and VAE are not applied; "
            "the template decides which models load"
        )
    for target in [t for ts in template.values.values() for t in ts]:
        if is_link(template.graph[target.node_id]["inputs"].get(target.input)):
            warnings.append(
                f"template {template.name}: binding {target.spec} replaces a link with a value"
            )
    return BuiltGraph(
        shot_id=panel.shot_id,
        graph=graph,
        uploads=tuple(uploads),
        filename_prefix=prefix,
        output_node_ids=template.output_node_ids,
        sha256=graph_sha256(graph),
        template=template.name,
        warnings=tuple(warnings),
    )


def bound_values(template: WorkflowTemplate, graph: Mapping[str, Any]) -> dict[str, Any]:
    """Read back, from a filled graph, the value at each bound input (first target of each)."""
    return {
        key: graph[targets[0].node_id]["inputs"].get(targets[0].input)
        for key, targets in template.values.items()
    }
