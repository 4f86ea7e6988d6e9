"""``/api/jobs`` of the current ComfyUI, built from the emulator's queue and history.

Routes and error bodies follow server.py @ 5e14d797 (get_jobs, get_job_by_id,
cancel_job_by_id, cancel_jobs_batch); the job records follow comfy_execution/jobs.py @ dfb874a6
(normalize_queue_item, normalize_history_item, get_outputs_summary, apply_sorting,
get_all_jobs, cancel_job). Only the ``current`` profile serves them. Written from reading the
source, not copied.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._executor import Executor
from ._profiles import is_canonical_uuid

__all__ = ["JOB_STATUSES", "JobsRoutes", "job_from_history", "job_from_queue", "list_jobs"]

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = (
    "pending",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
)
JOB_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
_HISTORY_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

_PREVIEWABLE_MEDIA = frozenset({"images", "video", "audio", "3d", "text"})
_THREE_D_EXT = (".obj", ".fbx", ".gltf", ".glb", ".usdz")
_TEXT_EXT = (".txt", ".md", ".json")
_TEXT_PREVIEW_MAX = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _pruned(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _metadata(extra: Any) -> tuple[Any, Any]:
    """(create_time, workflow_id) of a queue item's extra_data."""
    if not isinstance(extra, dict):
        return None, None
    pnginfo = extra.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    return extra.get("create_time"), workflow.get("id") if isinstance(workflow, dict) else None


def _normalize_item(item: Any) -> Any:
    """A 3D file name string becomes a file dict; other strings and non-dicts: None."""
    if isinstance(item, str):
        if item.lower().endswith(_THREE_D_EXT):
            return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"}
        return None
    return item if isinstance(item, dict) else None


def _previewable(media_type: str, item: dict[str, Any]) -> bool:
    if media_type in _PREVIEWABLE_MEDIA:
        return True
    fmt = str(item.get("format", "") or "")
    if fmt.startswith(("video/", "audio/")):
        return True
    return str(item.get("filename", "")).lower().endswith(_THREE_D_EXT + _TEXT_EXT)


def _is_text(media_type: str, item: dict[str, Any]) -> bool:
    return media_type == "text" or str(item.get("filename", "")).lower().endswith(_TEXT_EXT)


def _output_lists(outputs: Any) -> list[tuple[str, str, list[Any]]]:
    if not isinstance(outputs, dict):
        return []
    found = []
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type != "animated" and isinstance(items, list):
                found.append((str(node_id), str(media_type), items))
    return found


def outputs_summary(outputs: Any) -> tuple[int, dict[str, Any] | None]:
    """(outputs_count, preview_output): a saved visual output first, then any visual one,
    then a saved text file, then raw text (which is not counted)."""
    count = 0
    preview = fallback = text_file = text_raw = None
    for node_id, media_type, items in _output_lists(outputs):
        for raw in items:
            item = raw
            if not isinstance(raw, dict):
                item = _normalize_item(raw)
                if item is None:
                    if media_type == "text" and preview is None and text_raw is None:
                        value = raw[0] if isinstance(raw, tuple | list) and raw else raw
                        text = "" if value is None else str(value)
                        entry: dict[str, Any] = {"content": text[:_TEXT_PREVIEW_MAX]}
                        if len(text) > _TEXT_PREVIEW_MAX:
                            entry["truncated"] = True
                        text_raw = {**entry, "nodeId": node_id, "mediaType": media_type}
                    continue
            count += 1
            if preview is not None or not _previewable(media_type, item):
                continue
            enriched = {**item, "nodeId": node_id}
            enriched.setdefault("mediaType", media_type)
            if _is_text(media_type, item):
                text_file = text_file or enriched
            elif item.get("type") == "output":
                preview = enriched
            elif fallback is None:
                fallback = enriched
    return count, preview or fallback or text_file or text_raw


def _previewable_count(outputs: Any) -> int:
    count = 0
    for _node, media_type, items in _output_lists(outputs):
        for raw in items:
            item = raw if isinstance(raw, dict) else _normalize_item(raw)
            if item is not None and _previewable(media_type, item):
                count += 1
    return count


def _normalized_outputs(outputs: Any) -> Any:
    if not isinstance(outputs, dict):
        return outputs
    out: dict[str, Any] = {}
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            out[node_id] = node_outputs
            continue
        node: dict[str, Any] = {}
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                node[media_type] = items
                continue
            node[media_type] = [
                n if (n := _normalize_item(i)) is not None else i for i in items if i is not None
            ]
        out[node_id] = node
    return out


def job_from_queue(item: list[Any], status: str, include_workflow: bool = False) -> dict[str, Any]:
    """A pending or running queue item as a job record."""
    number, prompt_id, prompt, extra, _outputs = item[:5]
    create_time, workflow_id = _metadata(extra)
    job = _pruned(
        {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": create_time,
            "outputs_count": 0,
            "previewable_outputs_count": 0,
            "workflow_id": workflow_id,
        }
    )
    if include_workflow:
        job["workflow"] = {"prompt": prompt, "extra_data": extra}
    return job


def job_from_history(
    prompt_id: str, entry: dict[str, Any], include_outputs: bool = False
) -> dict[str, Any]:
    """A history entry as a job record: completed, failed, or cancelled (interrupted)."""
    number, _pid, prompt, extra, _outputs = entry["prompt"][:5]
    create_time, workflow_id = _metadata(extra)
    status_info = entry.get("status") or {}
    outputs = entry.get("outputs", {})
    count, preview = outputs_summary(outputs)
    error = start = end = None
    interrupted = False
    for message in status_info.get("messages", []) if isinstance(status_info, dict) else []:
        if not (isinstance(message, list | tuple) and len(message) >= 2):
            continue
        event, data = message[0], message[1]
        if not isinstance(data, dict):
            continue
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            if event == "execution_error":
                error = data
            elif event == "execution_interrupted":
                interrupted = True
    status = COMPLETED
    if isinstance(status_info, dict) and status_info.get("status_str") == "error":
        status = CANCELLED if interrupted else FAILED
    job = _pruned(
        {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": create_time,
            "execution_start_time": start,
            "execution_end_time": end,
            "execution_error": error,
            "outputs_count": count,
            "previewable_outputs_count": _previewable_count(outputs),
            "preview_output": preview,
            "workflow_id": workflow_id,
        }
    )
    if include_outputs:
        job["outputs"] = _normalized_outputs(outputs)
        job["execution_status"] = entry.get("status")
        job["workflow"] = {"prompt": prompt, "extra_data": extra}
    return job


def _sort_key(sort_by: str) -> Callable[[dict[str, Any]], Any]:
    if sort_by == "execution_duration":

        def duration(job: dict[str, Any]) -> Any:
            start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
            return end - start if end and start else 0

        return duration
    return lambda job: job.get("create_time", 0)


def list_jobs(
    running: list[list[Any]],
    pending: list[list[Any]],
    history: dict[str, dict[str, Any]],
    *,
    statuses: list[str] | None = None,
    workflow_id: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """(one page of jobs, how many matched): running, pending, then history, filtered and
    sorted (a stable sort, so equal keys keep that order)."""
    wanted = set(JOB_STATUSES if statuses is None else statuses)
    jobs: list[dict[str, Any]] = []
    if IN_PROGRESS in wanted:
        jobs += [job_from_queue(item, IN_PROGRESS) for item in running]
    if PENDING in wanted:
        jobs += [job_from_queue(item, PENDING) for item in pending]
    if wanted & _HISTORY_STATUSES:
        for pid, entry in history.items():
            job = job_from_history(pid, entry)
            if job["status"] in wanted:
                jobs.append(job)
    if workflow_id:
        jobs = [j for j in jobs if j.get("workflow_id") == workflow_id]
    jobs = sorted(jobs, key=_sort_key(sort_by), reverse=sort_order == "desc")
    total = len(jobs)
    if offset > 0:
        jobs = jobs[offset:]
    if limit is not None:
        jobs = jobs[:limit]
    return jobs, total


def _error(message: str, status: int = 400, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class JobsRoutes:
    """The four ``/api/jobs`` handlers over one executor's queue and history (read-only,
    except cancel, which uses the executor's own interrupt and dequeue)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def table(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/api/jobs", self.get_jobs),
            ("POST", "/api/jobs/cancel", self.cancel_batch),
            ("GET", "/api/jobs/{job_id}", self.get_job),
            ("POST", "/api/jobs/{job_id}/cancel", self.cancel_one),
        ]

    async def get_jobs(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        statuses = None
        if query.get("status"):
            statuses = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
            bad = [s for s in statuses if s not in JOB_STATUSES]
            if bad:
                return _error(
                    f"Invalid status value(s): {', '.join(bad)}. "
                    f"Valid values: {', '.join(JOB_STATUSES)}"
                )
        sort_by = query.get("sort_by", "created_at").lower()
        sort_order = query.get("sort_order", "desc").lower()
        if sort_by not in ("created_at", "execution_duration"):
            return _error("sort_by must be 'created_at' or 'execution_duration'")
        if sort_order not in ("asc", "desc"):
            return _error("sort_order must be 'asc' or 'desc'")
        limit = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return _error("limit must be an integer")
            if limit <= 0:
                return _error("limit must be a positive integer")
        offset = 0
        if "offset" in query:
            try:
                offset = max(0, int(query["offset"]))
            except ValueError:
                return _error("offset must be an integer")
        running, pending = self.executor.queue_snapshot()
        jobs, total = list_jobs(
            running,
            pending,
            self.executor.history,
            statuses=statuses,
            workflow_id=query.get("workflow_id"),
            sort_by=sort_by,
            sort_order=sort_order,
            limit=limit,
            offset=offset,
        )
        pagination = {
            "offset": offset,
            "limit": limit,
            "total": total,
            "has_more": offset + len(jobs) < total,
        }
        return web.json_response({"jobs": jobs, "pagination": pagination})

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info.get("job_id", "")
        if not job_id:
            return _error("job_id is required")
        entry = self.executor.history.get(job_id)
        if entry is not None:
            return web.json_response(job_from_history(job_id, entry, include_outputs=True))
        running, pending = self.executor.queue_snapshot()
        for items, status in ((running, IN_PROGRESS), (pending, PENDING)):
            for item in items:
                if item[1] == job_id:
                    return web.json_response(job_from_queue(item, status, include_workflow=True))
        return _error("Job not found", 404)

    def _cancel(self, job_id: str) -> bool:
        """Interrupt it if running, dequeue it if pending; finished or unknown: a no-op."""
        running, pending = self.executor.queue_snapshot()
        if any(item[1] == job_id for item in running):
            return self.executor.interrupt(job_id)
        if any(item[1] == job_id for item in pending):
            return self.executor.delete_pending(job_id) or self.executor.interrupt(job_id)
        return False

    async def cancel_one(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info.get("job_id", "")
        if not job_id:
            return _error("job_id is required")
        return web.json_response({"cancelled": self._cancel(job_id)})

    async def cancel_batch(self, request: web.Request) -> web.StreamResponse:
        try:
            data = json.loads(await request.text())
        except ValueError:
            return _error("Request body must be valid JSON")
        job_ids = data.get("job_ids") if isinstance(data, dict) else None
        if not isinstance(job_ids, list):
            return _error("job_ids must be a list")
        invalid = [
            j if isinstance(j, str) else repr(j) for j in job_ids if not is_canonical_uuid(j)
        ]
        if invalid:
            return _error("job_ids contains invalid id(s)", invalid_ids=invalid)
        cancelled = False
        for job_id in job_ids:
            if self._cancel(job_id):
                cancelled = True
        return web.json_response({"cancelled": cancelled})
