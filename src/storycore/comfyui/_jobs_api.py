"""Today's ComfyUI jobs API, typed: job records, the list with its filters, cancelling.

Read from the source (comfy_execution/jobs.py @ dfb874a6, server.py @ 5e14d797):

* ``GET /api/jobs/{id}``: one job from the running list, the pending queue or the history, 404
  ``{"error": "Job not found"}`` when none has it. ``status`` is ``pending``, ``in_progress``,
  ``completed``, ``failed`` or ``cancelled`` (an interrupted prompt); a finished job carries
  ``outputs`` (the history's node outputs), ``execution_status``, ``execution_error`` (the
  ``execution_error`` event's data), ``create_time`` and the execution start and end times (ms).
* ``GET /api/jobs``: ``{"jobs": [...], "pagination": {offset, limit, total, has_more}}``; query
  ``status`` (comma-separated), ``workflow_id``, ``sort_by`` (``created_at`` or
  ``execution_duration``), ``sort_order`` (``asc``/``desc``), ``limit`` (> 0), ``offset``.
* ``POST /api/jobs/{id}/cancel``: interrupts a running job (only if it is still the one running),
  dequeues a pending one; ``{"cancelled": false}`` for a finished or unknown id.
* ``POST /prompt`` refuses a client-chosen ``prompt_id`` that is not a UUID in canonical
  lowercase hyphenated form (400, error type ``invalid_prompt_id``).

Everything here is untrusted input: odd shapes give ``None`` or empty values, texts are cut and
redacted, at most :data:`MAX_JOBS` records and :data:`MAX_OUTPUT_NODES` output nodes are read.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storycore._redact import redact
from storycore.comfyui._models import (
    NodeOutput,
    PromptResult,
    PromptStatus,
    as_number,
    parse_node_output,
)
from storycore.errors import ComfyUIError, ServerResponseError

if TYPE_CHECKING:
    from storycore.comfyui.client import ComfyUIClient

__all__ = [
    "MAX_JOBS",
    "CancelOutcome",
    "JobError",
    "JobPage",
    "JobRecord",
    "JobStatus",
    "cancel_prompt",
    "check_prompt_id",
    "is_canonical_prompt_id",
    "jobs_query",
    "parse_job",
    "parse_job_page",
]

MAX_JOBS = 1000
MAX_OUTPUT_NODES = 1000
_MAX_TEXT = 2000


class CancelOutcome(enum.StrEnum):
    DELETED = "deleted"  # was pending, removed from the queue
    INTERRUPTED = "interrupted"  # was running, interrupt sent
    NOT_FOUND = "not_found"  # neither pending nor running (finished, or unknown)


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # a value this client does not know


_FILTERABLE = frozenset(s.value for s in JobStatus if s is not JobStatus.UNKNOWN)
_TO_PROMPT_STATUS = {
    JobStatus.COMPLETED: PromptStatus.SUCCESS,
    JobStatus.FAILED: PromptStatus.ERROR,
    JobStatus.CANCELLED: PromptStatus.INTERRUPTED,
}


def is_canonical_prompt_id(value: object) -> bool:
    """True for a UUID in canonical lowercase hyphenated form, the only prompt id today's
    ``POST /prompt`` accepts (comfy_execution/jobs.py @ dfb874a6, validate_job_id)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def check_prompt_id(value: str, *, current_server: bool = False) -> str:
    """``value`` when it may be sent as a prompt id, else :class:`ComfyUIError` (before any
    request). A UUID spelled otherwise (upper case, braces, no hyphens) is refused, not
    rewritten: the caller keys its tracking by the id it chose, and the server compares ids
    verbatim. Any other string is refused where the server is known to be today's ComfyUI;
    0.3.64 takes it (and a server that refuses it answers 400 ``invalid_prompt_id``)."""
    if is_canonical_prompt_id(value):
        return value
    try:
        canonical: str | None = str(uuid.UUID(str(value)))
    except ValueError:
        canonical = None
    if canonical is None and not current_server and isinstance(value, str) and value:
        return value
    suggestion = f" (write it as {canonical})" if canonical else ""
    raise ComfyUIError(
        f"prompt id {str(value)[:80]!r} is not a UUID in canonical lowercase form{suggestion}; "
        "today's ComfyUI refuses any other prompt id (400 invalid_prompt_id)",
        where="prompt_id",
        hint="leave the prompt id out and StoryCore chooses one (str(uuid.uuid4()))",
    )


def _text(value: Any, limit: int = 200) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return redact(str(value))[:limit]


def _int(value: Any) -> int | None:
    number = as_number(value)
    return int(number) if number is not None and abs(number) < 2**63 else None


@dataclass(frozen=True)
class JobError:
    """A failed job's ``execution_error``: the node that raised, and what."""

    node_id: str | None
    node_type: str | None
    exception_type: str | None
    exception_message: str

    def describe(self) -> str:
        node = f"node {self.node_id} ({self.node_type or '?'})" if self.node_id else "a node"
        kind = f"{self.exception_type}: " if self.exception_type else ""
        return f"{node} failed: {kind}{self.exception_message}".rstrip(": ")


@dataclass(frozen=True)
class JobRecord:
    """One job of ``/api/jobs``. ``outputs`` only in ``/api/jobs/{id}`` answers
    (``has_outputs``); the list gives ``outputs_count`` alone."""

    id: str
    status: JobStatus
    priority: float | None = None
    create_time: int | None = None
    execution_start_time: int | None = None
    execution_end_time: int | None = None
    outputs_count: int | None = None
    workflow_id: str | None = None
    error: JobError | None = None
    outputs: Mapping[str, NodeOutput] = field(default_factory=dict)
    has_outputs: bool = False

    @property
    def finished(self) -> bool:
        return self.status in _TO_PROMPT_STATUS

    @property
    def queued(self) -> bool:
        return self.status in (JobStatus.PENDING, JobStatus.IN_PROGRESS)

    @property
    def prompt_status(self) -> PromptStatus:
        """The history's word for how it ended (``UNKNOWN`` while it has not)."""
        return _TO_PROMPT_STATUS.get(self.status, PromptStatus.UNKNOWN)

    def result(self) -> PromptResult:
        """A completed job as a :class:`PromptResult` (its outputs; no timings)."""
        return PromptResult(
            prompt_id=self.id,
            status=self.prompt_status,
            outputs=dict(self.outputs),
            timings={},
            via="jobs_api",
        )


def _job_error(raw: Any) -> JobError | None:
    if not isinstance(raw, Mapping):
        return None
    return JobError(
        node_id=_text(raw.get("node_id")),
        node_type=_text(raw.get("node_type")),
        exception_type=_text(raw.get("exception_type")),
        exception_message=_text(raw.get("exception_message"), _MAX_TEXT) or "",
    )


def parse_job(body: Any) -> JobRecord | None:
    """One job record; ``None`` when it is not an object with an ``id``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("id"), str):
        return None
    try:
        status = JobStatus(str(body.get("status")))
    except ValueError:
        status = JobStatus.UNKNOWN
    raw_outputs = body.get("outputs")
    outputs: dict[str, NodeOutput] = {}
    if isinstance(raw_outputs, Mapping):
        for node_id, output in list(raw_outputs.items())[:MAX_OUTPUT_NODES]:
            outputs[str(node_id)] = parse_node_output(str(node_id), output)
    workflow_id = body.get("workflow_id")
    return JobRecord(
        id=body["id"][:200],
        status=status,
        priority=as_number(body.get("priority")),
        create_time=_int(body.get("create_time")),
        execution_start_time=_int(body.get("execution_start_time")),
        execution_end_time=_int(body.get("execution_end_time")),
        outputs_count=_int(body.get("outputs_count")),
        workflow_id=_text(workflow_id) if isinstance(workflow_id, str) else None,
        error=_job_error(body.get("execution_error")),
        outputs=outputs,
        has_outputs=isinstance(raw_outputs, Mapping),
    )


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /api/jobs``."""

    jobs: tuple[JobRecord, ...]
    offset: int = 0
    limit: int | None = None
    total: int | None = None
    has_more: bool = False


def parse_job_page(body: Any, max_jobs: int = MAX_JOBS) -> JobPage:
    """A page of the jobs list (at most ``max_jobs`` records, whatever the server sends)."""
    body = body if isinstance(body, Mapping) else {}
    raw_jobs = body.get("jobs")
    jobs = [parse_job(j) for j in (raw_jobs[:max_jobs] if isinstance(raw_jobs, list) else [])]
    raw_page = body.get("pagination")
    page: Mapping[str, Any] = raw_page if isinstance(raw_page, Mapping) else {}
    return JobPage(
        jobs=tuple(j for j in jobs if j is not None),
        offset=max(0, _int(page.get("offset")) or 0),
        limit=_int(page.get("limit")),
        total=_int(page.get("total")),
        has_more=page.get("has_more") is True,
    )


def jobs_query(
    *,
    status: Iterable[str] = (),
    workflow_id: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    limit: int | None = None,
    offset: int = 0,
) -> dict[str, str]:
    """The query of ``GET /api/jobs``, checked against what the server accepts (it answers
    400 otherwise); ``ValueError`` names the bad argument."""
    statuses = [str(s).lower() for s in status]
    bad = [s for s in statuses if s not in _FILTERABLE]
    if bad:
        raise ValueError(f"unknown job status {bad}; use {sorted(_FILTERABLE)}")
    if sort_by not in ("created_at", "execution_duration"):
        raise ValueError("sort_by must be 'created_at' or 'execution_duration'")
    if sort_order not in ("asc", "desc"):
        raise ValueError("sort_order must be 'asc' or 'desc'")
    if limit is not None and limit <= 0:
        raise ValueError("limit must be a positive number")
    query = {"sort_by": sort_by, "sort_order": sort_order, "offset": str(max(0, offset))}
    query["limit"] = str(min(limit or MAX_JOBS, MAX_JOBS))
    if statuses:
        query["status"] = ",".join(statuses)
    if workflow_id:
        query["workflow_id"] = workflow_id
    return query


# ---------------------------------------------------------------- cancelling
async def _cancel_with_jobs_api(client: ComfyUIClient, prompt_id: str) -> CancelOutcome | None:
    """``POST /api/jobs/{id}/cancel``; ``None`` when the server has no such route."""
    route = f"/api/jobs/{prompt_id}/cancel"
    try:
        body = await client._json("POST", route)
    except ServerResponseError as err:
        if err.status in (404, 405):
            return None
        raise
    if not isinstance(body, Mapping) or body.get("cancelled") is not True:
        return CancelOutcome.NOT_FOUND
    # A dequeued job is gone; an interrupted one is still running or already in the history.
    return (
        CancelOutcome.DELETED
        if await client.job(prompt_id) is None
        else (CancelOutcome.INTERRUPTED)
    )


async def _cancel_with_queue(
    client: ComfyUIClient, prompt_id: str, allow_global_interrupt: bool
) -> CancelOutcome:
    """0.3.64: look at ``/queue``, delete it if pending, interrupt it if running."""
    for _ in range(3):
        state = await client.queue()
        if state.is_running(prompt_id):
            await client.interrupt(prompt_id)
            if allow_global_interrupt and (await client.queue()).is_running(prompt_id):
                await client.interrupt(None)
            return CancelOutcome.INTERRUPTED
        if not state.contains(prompt_id):
            return CancelOutcome.NOT_FOUND
        await client.delete_from_queue([prompt_id])
        if not (await client.queue()).contains(prompt_id):
            return CancelOutcome.DELETED
        # It started between our look and the delete: go round and interrupt it.
    state = await client.queue()
    return CancelOutcome.INTERRUPTED if state.contains(prompt_id) else CancelOutcome.NOT_FOUND


async def cancel_prompt(
    client: ComfyUIClient, prompt_id: str, *, allow_global_interrupt: bool = False
) -> CancelOutcome:
    """Cancel one prompt: the jobs API where the server has it (atomic on the server: it
    interrupts only a job that is still the one running), else ``/queue`` and
    ``/interrupt`` as 0.3.64 needs (and for an id that is not a canonical UUID, which no
    server with a jobs API that checks ids can know, but an older one may)."""
    if is_canonical_prompt_id(prompt_id) and await client.has_jobs_api():
        outcome = await _cancel_with_jobs_api(client, prompt_id)
        if outcome is not None:
            return outcome
    return await _cancel_with_queue(client, prompt_id, allow_global_interrupt)
