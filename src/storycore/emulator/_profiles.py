"""What each emulated ComfyUI generation answers differently, in one place.

``"0.3.64"`` is exactly the recordings (tests/data/comfyui-reference/, October 2025).
``"current"`` adds what today's ComfyUI source does; :data:`DIFFERENCES` names each difference
with the source file and the commit it was read at (``Comfy-Org/ComfyUI``, first 8 hex digits).
The transforms here are pure: they take a recorded body and return the current one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CURRENT",
    "DIFFERENCES",
    "RECORDED",
    "SENSITIVE_EXTRA_DATA_KEYS",
    "Difference",
    "current_node_info",
    "current_system_stats",
    "invalid_prompt_id_body",
    "is_canonical_uuid",
    "server_features",
]

RECORDED = "0.3.64"
CURRENT = "current"


@dataclass(frozen=True)
class Difference:
    """One behaviour the current profile adds or changes, and where the source says so."""

    what: str
    source: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "GET /api/jobs: list of jobs (pending, in_progress, completed, failed, cancelled) with "
        "status/workflow_id filters, sort_by created_at|execution_duration, sort_order, "
        "offset/limit pagination and 400 {'error': ...} bodies for bad parameters",
        "server.py @ 5e14d797, comfy_execution/jobs.py @ dfb874a6",
    ),
    Difference(
        "GET /api/jobs/{id}: one job with outputs, execution_status and workflow; "
        "404 {'error': 'Job not found'}",
        "server.py @ 5e14d797, comfy_execution/jobs.py @ dfb874a6",
    ),
    Difference(
        "POST /api/jobs/{id}/cancel (interrupt if running, dequeue if pending, "
        "{'cancelled': bool}) and POST /api/jobs/cancel {'job_ids': [...]} (400 for a "
        "malformed body or id)",
        "server.py @ 5e14d797, comfy_execution/jobs.py @ dfb874a6",
    ),
    Difference(
        "POST /prompt: a client-chosen prompt_id must be a canonical lowercase UUID, else 400 "
        "{'error': {'type': 'invalid_prompt_id', ...}, 'node_errors': {}}; null means 'mint one'",
        "server.py @ 5e14d797 (post_prompt), comfy_execution/jobs.py @ dfb874a6 (validate_job_id)",
    ),
    Difference(
        "POST /prompt: extra_data gets create_time (ms since epoch) and loses "
        "auth_token_comfy_org/api_key_comfy_org; Comfy-Usage-Source header -> "
        "extra_data.comfy_usage_source",
        "server.py @ 5e14d797 (post_prompt), execution.py @ cb707e9c (SENSITIVE_EXTRA_DATA_KEYS)",
    ),
    Difference(
        "GET /features and the WebSocket feature_flags answer: supports_model_type_tags, "
        "extension.manager.supports_v4, node_replacements, assets (false: no asset database)",
        "comfy_api/feature_flags.py @ 1924b05e, server.py @ 5e14d797 (get_features)",
    ),
    Difference(
        "GET /system_stats: comfyui_version 0.38.1, comfy_package_versions, "
        "deploy_environment ('local-git'), newer frontend/templates versions; devices[] lists "
        "every torch device, primary first (the emulator has one: cpu)",
        "server.py @ 5e14d797 (system_stats), comfyui_version.py @ 20ca544e, "
        "requirements.txt @ 4f8cf3e2, app/frontend_management.py (get_comfy_package_versions), "
        "comfy/deploy_environment.py",
    ),
    Difference(
        "GET /object_info: every node gains is_input_list and has_intermediate_output; classic "
        "nodes gain search_aliases ([] unless set); V3 nodes gain dev_only",
        "server.py @ 5e14d797 (node_info), comfy_api/latest/_io.py @ 58a8a96c (NodeInfoV1)",
    ),
    Difference(
        "Preview frames: no difference found. Type 4 (big-endian u32 type, u32 metadata length, "
        "JSON {node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type}, "
        "image) to a client that announced supports_preview_metadata, type 1 otherwise",
        "server.py @ 5e14d797 (send_image_with_metadata), comfy_execution/progress.py @ "
        "1b71f275, main.py @ 02018c7e (hijack_progress)",
    ),
)

# execution.py @ cb707e9c: popped from extra_data before queueing, never shown in /queue,
# /history or /api/jobs.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

# ---- /features ---------------------------------------------------------------------------

_RECORDED_FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "max_upload_size": 104857600,
}


def server_features(profile: str) -> dict[str, Any]:
    """The server feature flags (``/features`` and the WebSocket ``feature_flags`` answer).

    Current: comfy_api/feature_flags.py @ 1924b05e ``_CORE_FEATURE_FLAGS``; ``assets`` is what
    main.py sets from the asset manager, off here (the emulator has no asset database).
    """
    if profile != CURRENT:
        return dict(_RECORDED_FEATURES)
    return {
        "supports_preview_metadata": True,
        "supports_model_type_tags": True,
        "max_upload_size": 104857600,
        "extension": {"manager": {"supports_v4": True}},
        "node_replacements": True,
        "assets": False,
    }


# ---- /prompt -----------------------------------------------------------------------------


def is_canonical_uuid(value: Any) -> bool:
    """comfy_execution/jobs.py @ dfb874a6 ``validate_job_id``: a string that is its own
    ``str(uuid.UUID(...))`` (lowercase, hyphenated, no braces or urn prefix)."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def invalid_prompt_id_body() -> dict[str, Any]:
    """The 400 body of server.py @ 5e14d797 ``post_prompt`` for a malformed prompt_id."""
    return {
        "error": {
            "type": "invalid_prompt_id",
            "message": "prompt_id must be a valid UUID",
            "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
            "omit it to let the server generate one",
            "extra_info": {},
        },
        "node_errors": {},
    }


# ---- /system_stats -----------------------------------------------------------------------

# comfyui_version.py @ 20ca544e and the comfy* pins of requirements.txt @ 4f8cf3e2 (the ones
# with an X.Y.Z version, as get_required_packages_versions keeps them).
CURRENT_COMFYUI_VERSION = "0.38.1"
_CURRENT_PACKAGES = (
    ("comfyui-frontend-package", "1.53.6"),
    ("comfyui-workflow-templates", "0.11.73"),
    ("comfyui-embedded-docs", "0.5.12"),
    ("comfy-kitchen", "0.2.36"),
    ("comfy-aimdo", "0.5.5"),
)
# comfy/deploy_environment.py: the first line of .comfy_environment, else this default.
_DEPLOY_ENVIRONMENT = "local-git"


def current_system_stats(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded body with the fields server.py @ 5e14d797 ``system_stats`` builds today,
    in its key order; the devices are the recorded ones (one cpu, the primary first)."""
    old = dict(recorded.get("system", {}))
    versions = dict(_CURRENT_PACKAGES)
    system: dict[str, Any] = {
        "os": old.get("os"),
        "ram_total": old.get("ram_total"),
        "ram_free": old.get("ram_free"),
        "comfyui_version": CURRENT_COMFYUI_VERSION,
        "required_frontend_version": versions["comfyui-frontend-package"],
        "installed_templates_version": versions["comfyui-workflow-templates"],
        "required_templates_version": versions["comfyui-workflow-templates"],
        "comfy_package_versions": [
            {"name": name, "installed": version, "required": version}
            for name, version in _CURRENT_PACKAGES
        ],
        "python_version": old.get("python_version"),
        "pytorch_version": old.get("pytorch_version"),
        "embedded_python": old.get("embedded_python", False),
        "deploy_environment": _DEPLOY_ENVIRONMENT,
        "argv": old.get("argv", []),
    }
    for key, value in old.items():  # e.g. storycore_emulator (the mock backend's mark)
        system.setdefault(key, value)
    return {"system": system, "devices": [dict(d) for d in recorded.get("devices", [])]}


# ---- /object_info ------------------------------------------------------------------------


def current_node_info(info: dict[str, Any]) -> dict[str, Any]:
    """One recorded node definition with the fields the current source adds (a new dict).

    A recorded V3 node (comfy_api/latest) is recognised by its ``api_node`` key, which V3's
    NodeInfoV1 always fills and classic nodes only have when they declare API_NODE.
    Classic (server.py @ 5e14d797 ``node_info``): is_input_list, has_intermediate_output,
    search_aliases (``[]`` when unset). V3 (comfy_api/latest/_io.py @ 58a8a96c
    ``get_v1_info``, None values pruned): is_input_list, has_intermediate_output, dev_only;
    search_aliases and essentials_category only when a node sets them.
    """
    out = dict(info)
    out.setdefault("is_input_list", False)
    out.setdefault("has_intermediate_output", False)
    if "api_node" in info:
        out.setdefault("dev_only", False)
    else:
        out.setdefault("search_aliases", [])
    return out
