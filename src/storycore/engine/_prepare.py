"""Before anything is submitted: graph options from the settings, graphs and cache keys for every
panel, user templates, and the preflight against the server."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from storycore._fsutil import file_sha256
from storycore._text import plural
from storycore.config import Settings
from storycore.engine._backends import Backend
from storycore.engine._jobs import PanelJob
from storycore.errors import PreflightFailed, StoryCoreError, TemplateError, WorkflowError
from storycore.panels import Panel
from storycore.project import Project
from storycore.workflows import (
    BuiltGraph,
    GraphOptions,
    Problem,
    WorkflowTemplate,
    build_panel_graph,
    load_template,
    preflight_graphs,
    workflow_fingerprint,
)

_log = logging.getLogger("storycore.engine")

__all__ = [
    "build_jobs",
    "deprecation_notices",
    "graph_options",
    "load_templates",
    "preview_graphs",
    "ready_jobs",
    "run_preflight",
    "take_fingerprint",
]


def graph_options(settings: Settings) -> GraphOptions:
    """Map the settings onto the graph builder's options."""
    cn, ip, render = settings.controlnet, settings.ipadapter, settings.render
    models = cn.models
    return GraphOptions(
        filename_root=render.filename_prefix_root,
        controlnet_pose=models.get("pose", GraphOptions.controlnet_pose),
        controlnet_depth=models.get("depth", GraphOptions.controlnet_depth),
        controlnet_lineart=models.get("lineart", GraphOptions.controlnet_lineart),
        controlnet_canny=models.get("canny", GraphOptions.controlnet_canny),
        controlnet_strength=cn.strength,
        controlnet_start=cn.start_percent,
        controlnet_end=cn.end_percent,
        preprocess=cn.preprocess,
        ipadapter_mode="files" if ip.model_file else "unified",
        ipadapter_preset=ip.preset,
        ipadapter_model=ip.model_file or GraphOptions.ipadapter_model,
        clip_vision_model=ip.clip_vision or GraphOptions.clip_vision_model,
        ipadapter_weight=ip.weight,
        ipadapter_weight_type=ip.weight_type,
        ipadapter_start=ip.start_at,
        ipadapter_end=ip.end_at,
        ipadapter_noise=ip.noise,
        img2img_denoise=render.img2img_denoise,
    )


def load_templates(
    settings: Settings, project: Project, object_info: Mapping[str, Any] | None
) -> dict[str, WorkflowTemplate]:
    """The user templates declared in the settings (``[templates] name = "file"``).

    A relative path is the project's: it must really lie (links followed) inside the project
    folder or a ``trust.reference_folders`` folder. A binding file there is project content, so
    the workflow it names must lie there too. A binding file elsewhere was named by the user
    (a project's storycore.toml may not name one: storycore._project_trust) and may name any
    workflow."""
    from storycore._project_trust import REFERENCE_HINT, outside_reach, outside_words

    allowed = settings.trust.reference_folders
    templates: dict[str, WorkflowTemplate] = {}
    for name, path in settings.templates.items():
        binding = path if path.is_absolute() else project.root / path
        leads = outside_reach(project.root, binding, allowed)
        if leads is not None and not path.is_absolute():
            raise TemplateError(
                outside_words("template file", str(path), project.root, leads),
                where=f"setting templates.{name}",
                hint=REFERENCE_HINT,
            )
        if not binding.is_file():
            raise TemplateError(
                f"template {name!r} points at {binding}, which does not exist",
                where=f"setting templates.{name}",
                hint="give the path of the binding file, relative to the project folder",
            )
        confined = (project.root, *allowed) if leads is None else None
        templates[name] = load_template(binding, object_info, name=name, confined_to=confined)
    return templates


def preview_graphs(
    project: Project, panels: Sequence[Any], options: Any
) -> list[Mapping[str, Any]]:
    """Graphs built for core ComfyUI, used to learn which models a mock server must offer."""
    graphs: list[Mapping[str, Any]] = []
    for panel in panels:
        try:
            graphs.append(build_panel_graph(panel, options).graph)
        except StoryCoreError:
            continue
    return graphs


async def build_jobs(
    project: Project,
    panels: Sequence[Panel],
    options: GraphOptions,
    node_classes: Collection[str] | None,
    templates: Mapping[str, WorkflowTemplate] | None = None,
) -> tuple[list[PanelJob], dict[str, StoryCoreError]]:
    """A job per panel (graph + cache key), and the panels that could not be built.
    ``node_classes`` are the server's (``None``: a core ComfyUI)."""
    jobs: list[PanelJob] = []
    failures: dict[str, StoryCoreError] = {}
    hashes: dict[Path, str] = {}
    for panel in panels:
        try:
            built = build_panel_graph(
                panel, options, templates=templates, node_classes=node_classes
            )
        except WorkflowError as err:
            failures[panel.key] = err
            continue
        image_hashes: dict[Path, str] = {}
        try:
            for upload in built.uploads:
                path = upload.local_path
                if path not in hashes:
                    hashes[path] = await asyncio.to_thread(file_sha256, path)
                image_hashes[path] = hashes[path]
        except OSError as exc:
            failures[panel.key] = WorkflowError(
                f"the image {exc.filename} cannot be read ({exc.strerror})",
                where=f"shot {panel.shot_id}",
                hint="fix the path in storyboard.json (paths are relative to the project)",
            )
            continue
        jobs.append(
            PanelJob(
                panel=panel,
                fingerprint=take_fingerprint(workflow_fingerprint(built, image_hashes), panel),
                image_hashes=image_hashes,
                rebuild=functools.partial(
                    build_panel_graph,
                    panel,
                    options,
                    templates=templates,
                    node_classes=node_classes,
                ),
            )
        )  # not kept: the preflight builds each graph again and lets it go (one more build
        # pass, ~0.1 ms a panel, against some 5 MB of graphs held at once on 2000 panels)
    return jobs, failures


def take_fingerprint(fingerprint: str, panel: Panel) -> str:
    """The render-cache key of a panel: its workflow's fingerprint, with the take number and the
    profile when they are not the defaults (a plain render's key is what it always was, so a
    board rendered before takes existed is not rendered again)."""
    if panel.take == 1 and panel.profile is None:
        return fingerprint
    extra = f"{fingerprint}|take={panel.take}|profile={panel.profile or ''}"
    return hashlib.sha256(extra.encode("utf-8", "surrogatepass")).hexdigest()


def run_preflight(
    jobs: Sequence[PanelJob], backend: Backend, *, allow_api_nodes: bool = False
) -> tuple[dict[str, StoryCoreError], list[str]]:
    """Check every graph against the server: the shots with errors, each with its problems, and
    the notices worth a line during a render (deprecated node classes, one line per class).

    Paid API nodes are errors unless ``allow_api_nodes`` (the user's ``comfyui.allow_api_nodes``).
    """

    def graphs() -> Iterator[BuiltGraph]:
        for job in jobs:
            yield job.built
            job.release()

    report = preflight_graphs(
        graphs(),
        backend.object_info,
        backend.models,
        system_stats=backend.system_stats,
        keep_graphs=False,
        allow_api_nodes=allow_api_nodes,
    )
    failed: dict[str, StoryCoreError] = {}
    for job in jobs:
        errors = [p for p in report.for_shot(job.panel.shot_id) if p.severity == "error"]
        if errors:
            failed[job.shot_id] = PreflightFailed(
                "; ".join(dict.fromkeys(p.paragraph() for p in errors)),  # takes share them
                where=f"shot {job.shot_id} on {backend.url}",
                hint="fix these before rendering; `storycore preflight` lists every problem",
                problems=errors,
            )
    return failed, deprecation_notices(report.warnings)


def deprecation_notices(warnings: Iterable[Problem], most_shots: int = 5) -> list[str]:
    """One line per deprecated node class the board uses, naming a few of its shots (the
    newer ``/object_info`` field ``deprecated``, ComfyUI server.py @ 5e14d797 node_info)."""
    shots: dict[str, list[str]] = {}
    for problem in warnings:
        if problem.code == "deprecated_node" and problem.class_type:
            seen = shots.setdefault(problem.class_type, [])
            if problem.shot_id and problem.shot_id not in seen:
                seen.append(problem.shot_id)
    lines = []
    for cls, ids in sorted(shots.items()):
        named = ", ".join(ids[:most_shots]) + (
            f" and {len(ids) - most_shots} more" if len(ids) > most_shots else ""
        )
        lines.append(
            f"node class {cls} is deprecated on this server (a later ComfyUI may drop it); "
            f"used by {plural(len(ids), 'shot')}: {named}. Replace it in the template"
        )
    return lines


async def ready_jobs(
    settings: Settings,
    project: Project,
    panels: Sequence[Panel],
    options: GraphOptions,
    backends: Sequence[Backend],
) -> tuple[list[PanelJob], dict[str, StoryCoreError], list[str]]:
    """Every panel's job built and checked against the first server: (the jobs that may be
    rendered, the shots that may not with why, notices for the run). A panel's graph uses only
    node classes every server has."""
    classes = frozenset.intersection(*(b.node_classes for b in backends))
    templates = (
        load_templates(settings, project, backends[0].object_info)
        if any(p.template for p in panels)
        else {}
    )
    jobs, failed = await build_jobs(project, panels, options, classes, templates)
    refused, notices = await asyncio.to_thread(
        run_preflight, jobs, backends[0], allow_api_nodes=settings.comfyui.allow_api_nodes
    )
    _log.debug(
        "preflight of %d graph(s) against %s: %d panel(s) with errors",
        len(jobs),
        backends[0].url,
        len(refused),
    )
    failed.update(refused)
    return [j for j in jobs if j.shot_id not in refused], failed, notices
