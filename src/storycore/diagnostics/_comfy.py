"""Classify ComfyUI's own error bodies: ``execution_error`` data and ``POST /prompt`` rejections.

The shapes are the recorded ones (ComfyUI 0.3.64): ``execution_error`` carries ``node_id``,
``node_type``, ``exception_type``, ``exception_message``; a 400 from ``POST /prompt`` carries
``error{type,message,details}`` and ``node_errors{id:{errors[{type,message,details,extra_info}],
class_type}}``. Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from storycore.diagnostics._model import (
    Category,
    Diagnosis,
    DiagnosticContext,
    Severity,
    Strategy,
)

__all__ = [
    "LOADER_INPUT_FOLDERS",
    "classify_execution_error",
    "classify_prompt_rejection",
    "execution_error_from_history",
]

#: Loader input name -> the ComfyUI model folder its choices come from.
LOADER_INPUT_FOLDERS: Mapping[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "ipadapter_file": "ipadapter",
    "unet_name": "diffusion_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "upscale_model": "upscale_models",
    "model_name": "upscale_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
}

_OOM_MARKERS = (
    "out of memory",
    "outofmemoryerror",
    "this error means you ran out of memory",
    "allocation on device",
    "mps backend out of memory",
)
_MISSING_MODEL = re.compile(r"\b(model|weights?|checkpoint|file)\b[^.\n]*\bnot found\b", re.I)
_OFFLINE_MARKERS = (
    "localentrynotfounderror",
    "couldn't connect to 'https://huggingface.co'",
    "locate the file on the hub",
    "check your internet connection",
)
_UNKNOWN_CLASS = re.compile(r"node (\S+) does not exist", re.I)
_PACK_HINTS: tuple[tuple[str, str], ...] = (
    ("IPAdapter", "ComfyUI_IPAdapter_plus (github.com/cubiq/ComfyUI_IPAdapter_plus)"),
    ("IPAAdapter", "ComfyUI_IPAdapter_plus (github.com/cubiq/ComfyUI_IPAdapter_plus)"),
    ("Preprocessor", "comfyui_controlnet_aux (github.com/Fannovel16/comfyui_controlnet_aux)"),
)


def _folder_for(input_name: str, class_type: str) -> str | None:
    if input_name == "clip_name" and "CLIPVision" in class_type:
        return "clip_vision"
    return LOADER_INPUT_FOLDERS.get(input_name)


def _installed_text(context: DiagnosticContext, folder: str | None) -> str:
    if folder is None:
        return ""
    names = list(context.installed_models.get(folder, ()))
    if not names:
        return f"; `models/{folder}` holds no model files"
    shown = ", ".join(f"`{n}`" for n in sorted(names)[:8])
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return f"; installed: {shown}{more}"


def _resolve(preferred: Strategy, context: DiagnosticContext) -> Strategy:
    """Downgrade a strategy the caller cannot apply (FAILOVER -> MOCK -> ABORT)."""
    if preferred is Strategy.FAILOVER and not context.can_failover:
        preferred = Strategy.MOCK
    if preferred is Strategy.MOCK and not context.allow_mock:
        preferred = Strategy.ABORT
    return preferred


def _short(text: str, limit: int = 300) -> str:
    first = " ".join(text.strip().split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


def execution_error_from_history(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``execution_error`` data inside a ``/history/{id}`` entry's ``status.messages``."""
    status = entry.get("status")
    if not isinstance(status, Mapping):
        return None
    for message in status.get("messages") or ():
        if (
            isinstance(message, Sequence)
            and len(message) == 2
            and message[0] == "execution_error"
            and isinstance(message[1], Mapping)
        ):
            return message[1]
    return None


def classify_execution_error(
    data: Mapping[str, Any], context: DiagnosticContext | None = None
) -> Diagnosis:
    """Classify the data of a WebSocket ``execution_error`` (or the same inside history)."""
    ctx = context or DiagnosticContext()
    node_id = str(data.get("node_id")) if data.get("node_id") is not None else None
    node_type = str(data.get("node_type") or "") or None
    exc_type = str(data.get("exception_type") or "")
    exc_msg = str(data.get("exception_message") or "")
    where = f"node {node_id} ({node_type})" if node_id else node_type
    text = f"{exc_type} {exc_msg}".lower()
    common: dict[str, Any] = {
        "where": where,
        "node_id": node_id,
        "node_type": node_type,
        "error_type": exc_type or None,
    }
    if any(marker in text for marker in _OOM_MARKERS):
        # ComfyUI unloads every model after an OOM, so one retry can succeed.
        return Diagnosis(
            category=Category.RESOURCE,
            severity=Severity.HIGH,
            strategy=Strategy.RETRY,
            fallback=_resolve(Strategy.FAILOVER, ctx),
            retry_limit=1,
            code="out_of_memory",
            message=f"CUDA out of memory in {where or 'the graph'}",
            suggestion=(
                "CUDA out of memory: lower the render size or steps, render one panel at a time, "
                "or restart ComfyUI with --lowvram (or --novram)"
            ),
            **common,
        )
    if any(marker in text for marker in _OFFLINE_MARKERS):
        return Diagnosis(
            category=Category.CONFIGURATION,
            severity=Severity.HIGH,
            strategy=_resolve(Strategy.FAILOVER, ctx),
            code="missing_model",
            message=f"{node_type or 'a node'} could not download its weights: {_short(exc_msg)}",
            suggestion=(
                f"{node_type or 'this node'} downloads its weights on first use and the ComfyUI "
                "server could not reach huggingface.co: run it once with internet access, or put "
                "the weights in the pack's ckpts folder (custom_nodes/comfyui_controlnet_aux/ckpts)"
            ),
            **common,
        )
    if _MISSING_MODEL.search(exc_msg) or exc_type.endswith("FileNotFoundError"):
        folder = "clip_vision" if "clipvision" in text.replace(" ", "") else None
        if folder is None and "ipadapter" in text.replace("-", "").replace(" ", ""):
            folder = "ipadapter"
        return Diagnosis(
            category=Category.CONFIGURATION,
            severity=Severity.HIGH,
            strategy=_resolve(Strategy.FAILOVER, ctx),
            code="missing_model",
            message=f"{node_type or 'a node'} did not find its model: {_short(exc_msg)}",
            suggestion=(
                f"install the model {node_type or 'the node'} needs"
                + (f" into models/{folder}" if folder else "")
                + _installed_text(ctx, folder)
            ),
            **common,
        )
    return Diagnosis(
        category=Category.WORKFLOW,
        severity=Severity.HIGH,
        strategy=Strategy.ABORT,
        code="bad_input",
        message=f"{node_type or 'a node'} failed: {exc_type}: {_short(exc_msg)}",
        suggestion=(
            f"check the inputs of {where or 'the failing node'} "
            "(sizes, batch sizes, file names); the graph ran up to that node"
        ),
        **common,
    )


def classify_prompt_rejection(
    body: Mapping[str, Any], context: DiagnosticContext | None = None
) -> Diagnosis:
    """Classify a ``POST /prompt`` 400 body (or a 200 carrying ``node_errors``)."""
    ctx = context or DiagnosticContext()
    error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
    assert isinstance(error, Mapping)
    error_type = str(error.get("type") or "")
    message = str(error.get("message") or "")
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), Mapping) else {}
    assert isinstance(node_errors, Mapping)

    unknown = _UNKNOWN_CLASS.search(message)
    if error_type == "invalid_prompt" and unknown:
        return _missing_node(unknown.group(1), str(error.get("details") or ""), ctx)

    missing: list[tuple[str, str, str, str]] = []  # node id, class, value, folder
    problems: list[str] = []
    for node_id, node in node_errors.items():
        if not isinstance(node, Mapping):
            continue
        class_type = str(node.get("class_type") or "")
        for err in node.get("errors") or ():
            if not isinstance(err, Mapping):
                continue
            extra = err.get("extra_info") if isinstance(err.get("extra_info"), Mapping) else {}
            assert isinstance(extra, Mapping)
            input_name = str(extra.get("input_name") or "")
            folder = _folder_for(input_name, class_type)
            if err.get("type") == "value_not_in_list" and folder is not None:
                missing.append((str(node_id), class_type, str(extra.get("received_value")), folder))
            else:
                problems.append(
                    f"node {node_id} ({class_type}): {err.get('message')}"
                    + (f" ({err.get('details')})" if err.get("details") else "")
                )
    if missing:
        node_id, class_type, value, folder = missing[0]
        names = ", ".join(f"`{m[2]}` (models/{m[3]})" for m in missing)
        return Diagnosis(
            category=Category.CONFIGURATION,
            severity=Severity.HIGH,
            strategy=_resolve(Strategy.FAILOVER, ctx),
            code="missing_model",
            message=f"model not installed on the server: {names}",
            suggestion=(
                f"{folder.rstrip('s')} `{value}` is not installed{_installed_text(ctx, folder)}"
            ),
            where=f"node {node_id} ({class_type})",
            node_id=node_id,
            node_type=class_type,
            error_type=error_type or "value_not_in_list",
        )
    detail = "; ".join(problems) or _short(f"{message} {error.get('details') or ''}")
    return Diagnosis(
        category=Category.WORKFLOW,
        severity=Severity.HIGH,
        strategy=Strategy.ABORT,
        code="bad_input" if problems else (error_type or "invalid_prompt"),
        message=f"ComfyUI rejected the graph: {detail}",
        suggestion="fix the inputs named above; ComfyUI ran nothing from this graph",
        error_type=error_type or None,
    )


def _missing_node(class_type: str, details: str, ctx: DiagnosticContext) -> Diagnosis:
    hint = f"the node class `{class_type}` is not installed on the server"
    close = difflib.get_close_matches(class_type, sorted(ctx.known_node_classes), n=1, cutoff=0.8)
    lower = {c.lower(): c for c in ctx.known_node_classes}
    if class_type.lower() in lower:
        hint += f"; class names are case-sensitive: did you mean `{lower[class_type.lower()]}`?"
    elif close:
        hint += f"; did you mean `{close[0]}`?"
    else:
        pack = next((p for prefix, p in _PACK_HINTS if prefix in class_type), None)
        hint += (
            f"; install the custom node pack {pack}" if pack else "; install its custom node pack"
        )
        hint += " and restart ComfyUI"
    return Diagnosis(
        category=Category.CONFIGURATION,
        severity=Severity.HIGH,
        strategy=_resolve(Strategy.FAILOVER, ctx),
        code="missing_custom_node",
        message=f"ComfyUI does not know the node `{class_type}`",
        suggestion=hint,
        where=details.removeprefix("Node ID ").strip("'") or None,
        node_type=class_type,
        error_type="invalid_prompt",
    )
