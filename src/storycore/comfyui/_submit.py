"""Reading the answer of ``POST /prompt``: the prompt id, or every node error of a refusal.

A refusal is a 400 with ``{"error": {...}, "node_errors": {...}}``; today's servers also refuse
a client-chosen ``prompt_id`` that is not a canonical lowercase UUID that way (error type
``invalid_prompt_id``, ComfyUI server.py @ 5e14d797), which the client never sends (it
normalises every id first, ``_jobs_api.canonical_prompt_id``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from storycore._redact import redact
from storycore.comfyui._limits import redact_strings
from storycore.comfyui._models import (
    SubmitResult,
    as_number,
    describe_node_errors,
    parse_node_errors,
)
from storycore.errors import PromptRejected, ServerResponseError

if TYPE_CHECKING:
    from storycore.comfyui._transport import HttpResponse
    from storycore.comfyui.client import ComfyUIClient

__all__ = ["submit_answer"]

_log = logging.getLogger("storycore.comfyui.client")


def submit_answer(
    client: ComfyUIClient, response: HttpResponse, client_id: str | None
) -> SubmitResult:
    """The :class:`SubmitResult` of a ``POST /prompt`` answer; :class:`PromptRejected` for a
    400 (listing every node error), :class:`ServerResponseError` for anything else odd."""
    where = client._where("/prompt")
    if response.status == 400:
        # The server's text may quote a credential back: hidden before it goes anywhere
        # (the error's fields are kept for diagnostics, which store them).
        payload = redact_strings(client._decode(response, "/prompt"))
        error = payload.get("error") if isinstance(payload, dict) else None
        node_errors = payload.get("node_errors") if isinstance(payload, dict) else None
        if isinstance(error, str):
            error = {"type": "error", "message": error}
        hint = "fix the listed inputs (install missing models, or pick an installed value)"
        if isinstance(error, dict) and error.get("type") == "invalid_prompt_id":
            hint = "leave the prompt id out (StoryCore then sends a canonical lowercase UUID)"
        raise PromptRejected(
            "ComfyUI refused the prompt: " + describe_node_errors(error, node_errors),
            where=where,
            hint=hint,
            error=error if isinstance(error, dict) else None,
            node_errors=node_errors if isinstance(node_errors, dict) else None,
        )
    client._check_status(response, "/prompt")
    payload = client._decode(response, "/prompt")
    if not isinstance(payload, dict) or "prompt_id" not in payload:
        raise ServerResponseError(
            "POST /prompt answered 200 without a prompt_id",
            where=where,
            hint="check that the URL points at ComfyUI",
            status=200,
            body=redact(response.text()[:4000])[:2000],
        )
    problems = parse_node_errors(payload.get("node_errors"))
    if problems:
        _log.warning(
            "prompt %s queued, but some outputs will not run: %s",
            payload["prompt_id"],
            describe_node_errors(None, payload.get("node_errors")),
        )
    number = payload.get("number")
    return SubmitResult(
        prompt_id=str(payload["prompt_id"]),
        number=as_number(number) or 0.0,
        client_id=client_id,
        node_errors=tuple(problems),
        raw=payload,
    )
