"""One panel's trip through a server: upload, journal, submit, follow, download, record.

:class:`PanelJob` is what the scheduler hands to a backend; :func:`run_on_backend` does the
work and returns a :class:`JobOutcome`, or raises :class:`Requeue` when the panel should go to
another (or the same, later) backend: the server vanished, lost the prompt or timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from storycore.comfyui import (
    DownloadedFile,
    OutputFile,
    PromptHandle,
    PromptResult,
)
from storycore.engine._backends import Backend
from storycore.engine._events import EventSink, PanelSubmitted
from storycore.engine._follow import follow_prompt, journal_text, withdraw
from storycore.engine._outputs import discard_download, download_name, render_folder
from storycore.errors import (
    AssetError,
    ExecutionFailed,
    OutputNotFetched,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    RenderError,
    ServerResponseError,
    ServerTimeout,
    ServerUnreachable,
    StoryCoreError,
    UnsafePathError,
)
from storycore.journal import Journal
from storycore.manifest import AssetRecord, Timings, asset_relpath
from storycore.panels import Panel
from storycore.project import Project, now_iso
from storycore.workflows import BuiltGraph, bind_uploads

_log = logging.getLogger("storycore.engine")

__all__ = [
    "JobOutcome",
    "PanelJob",
    "Requeue",
    "follow_prompt",
    "journal_text",
    "pick_next",
    "run_on_backend",
    "unexpected_error",
]

LOADER_CLASSES = frozenset(
    {
        "CheckpointLoaderSimple",
        "VAELoader",
        "LoraLoader",
        "ControlNetLoader",
        "CLIPVisionLoader",
        "IPAdapterModelLoader",
        "IPAdapterUnifiedLoader",
    }
)
SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom"})
# Loader inputs that name a model file: what a record's ``models`` lists.
MODEL_INPUTS = frozenset(
    {
        "ckpt_name",
        "unet_name",
        "lora_name",
        "vae_name",
        "control_net_name",
        "clip_name",
        "ipadapter_file",
    }
)


@dataclass
class PanelJob:
    """A panel to render, with its render-cache key and its graph.

    The graph is dropped between uses (:meth:`release`) and built again when needed: building
    is pure and deterministic (well under a millisecond), and a 2000-panel board then holds
    2000 small panels in memory instead of 2000 graphs.
    """

    panel: Panel
    fingerprint: str
    image_hashes: dict[Path, str]
    rebuild: Callable[[], BuiltGraph]
    attempts: int = 0
    tried: list[str] = field(default_factory=list)
    not_before: float = 0.0  # time.monotonic() before which a retry is not submitted (backoff)
    _built: BuiltGraph | None = None

    @property
    def built(self) -> BuiltGraph:
        if self._built is None:
            self._built = self.rebuild()
        return self._built

    def release(self) -> None:
        self._built = None

    @property
    def shot_id(self) -> str:
        """The panel's key in the run: its shot id, or ``SHOT#N`` for take N > 1 (what events,
        outcomes and the journal name it by)."""
        return self.panel.key


def pick_next(
    pending: deque[PanelJob], backend: Backend, backends: Sequence[Backend]
) -> PanelJob | None:
    """The next panel for ``backend``: one on the checkpoint it has loaded, else any it has not
    failed already; a panel that failed everywhere may come back once no other backend is up.
    A retry waiting out its backoff (``not_before``) is not picked yet."""
    if not pending:
        return None
    now = time.monotonic()
    for job in pending:
        if (
            job.panel.checkpoint == backend.last_checkpoint
            and backend.url not in job.tried
            and job.not_before <= now
        ):
            pending.remove(job)
            return job
    first_ready: PanelJob | None = None
    for job in pending:
        if job.not_before > now:
            continue
        if backend.url not in job.tried or len(backends) == 1:
            pending.remove(job)
            return job
        first_ready = first_ready or job
    if first_ready is not None and not any(b is not backend and b.healthy for b in backends):
        pending.remove(first_ready)
        return first_ready
    return None


@dataclass
class JobOutcome:
    record: AssetRecord
    seconds: float
    backend: str
    resumed: bool = False


def unexpected_error(exc: BaseException, where: str) -> RenderError:
    """A panel's work raised something that is no StoryCoreError (a bug, or a server answer no
    check foresaw): a clear error for the panel. The traceback goes to the debug log (-v)."""
    _log.debug("unexpected error while rendering", exc_info=exc)
    try:
        text = journal_text(exc)[:300]
    except Exception:  # an exception whose own text cannot be made
        text = ""
    return RenderError(
        f"unexpected error while rendering: {type(exc).__name__}" + (f": {text}" if text else ""),
        where=where,
        hint="this is a StoryCore bug (or an answer no ComfyUI sends); run again with -v and "
        "report the log",
    )


class Requeue(Exception):
    """The panel did not finish on this backend for a reason another try may fix."""

    def __init__(self, error: StoryCoreError, *, backend_down: bool) -> None:
        self.error = error
        self.backend_down = backend_down
        super().__init__(str(error))


TRANSIENT = (ServerUnreachable, ServerTimeout, PromptLost, ServerResponseError)


async def _upload_images(job: PanelJob, backend: Backend, journal: Journal) -> dict[Path, str]:
    names: dict[Path, str] = {}
    for spec in job.built.uploads:
        if spec.local_path in names:
            continue
        uploaded = await backend.client.upload_image(spec.local_path, subfolder="storycore")
        names[spec.local_path] = uploaded.reference
        await asyncio.to_thread(
            journal.append,
            "upload",
            backend=backend.url,
            name=uploaded.name,
            subfolder=uploaded.subfolder,
            sha256=uploaded.sha256,
            shot_id=job.shot_id,
        )
    return names


def _timings(handle: PromptHandle, submitted_at: float) -> Timings:
    timings = handle.timings()
    starts = [t.started for t in timings.values() if t.started is not None]
    ends = [t.finished for t in timings.values() if t.finished is not None]

    def total(classes: frozenset[str]) -> float | None:
        values = [
            t.duration
            for t in timings.values()
            if t.class_type in classes and t.duration is not None
        ]
        return round(sum(values), 4) if values else None

    server = handle.server_execution_s  # the server's own clock, when it told us
    seen = max(ends) - min(starts) if starts and ends else None
    execution = server if server is not None else seen
    return Timings(
        queued=round(min(starts) - submitted_at, 4) if starts else None,
        model_load=total(LOADER_CLASSES),
        sampling=total(SAMPLER_CLASSES),
        execution=round(execution, 4) if execution is not None else None,
    )


async def _download(
    backend: Backend, ref: OutputFile, root: Path, shot_id: str, attempts: int = 4
) -> DownloadedFile:
    """Download one output into the shot's render folder under a fresh temporary name
    (:func:`download_name`), streamed, hashed and checked as an image by the client; transient
    trouble is retried (bounded, 0.5 s doubling). The client removes a partial file itself."""
    folder = await asyncio.to_thread(render_folder, root, shot_id)
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await backend.client.download(
                ref, folder, inside=root, name=download_name(shot_id), verify=True
            )
        except TRANSIENT:
            if attempt == attempts:
                raise
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class RenderStore(Protocol):
    """Where a downloaded image lands: the engine's ``ProjectWriter``."""

    @property
    def project(self) -> Project: ...

    def land(
        self,
        shot_id: str,
        version: int,
        draft: Callable[[int], tuple[AssetRecord, dict[str, Any]]],
        download: Path,
    ) -> AssetRecord: ...


async def collect_output(
    *,
    job: PanelJob,
    backend: Backend,
    result: PromptResult,
    store: RenderStore,
    submitted_at: float,
    handle: PromptHandle | None,
    prompt_id: str,
) -> AssetRecord:
    """Download the panel's image into a temporary file in its shot folder, then land it in the
    project (provenance, image, sidecar, journal) in one worker-thread step, which consumes the
    file; it is removed too when anything fails (or the run is cancelled) before that."""
    images = [f for f in result.files if f.kind.value == "image" and f.type == "output"]
    wanted = set(job.built.output_node_ids)
    preferred = [f for f in images if f.node_id in wanted] or images
    if not preferred:
        raise AssetError(
            f"prompt {prompt_id} finished without an output image",
            where=f"{backend.url} (shot {job.shot_id})",
            hint="check that the workflow ends in a SaveImage node",
        )
    root = store.project.root
    started = time.monotonic()
    downloaded = await _download(backend, preferred[0], root, job.panel.shot_id)
    try:
        download_s = time.monotonic() - started
        _log.debug(
            "downloaded %r (%d bytes in %.3f s) of prompt %s from %s",
            preferred[0].filename,
            downloaded.size,
            download_s,
            prompt_id,
            backend.url,
        )
        draft = _drafter(job, backend, prompt_id, handle, submitted_at, download_s)
        panel = job.panel
        return await asyncio.to_thread(
            store.land, panel.shot_id, panel.version, draft, downloaded.path
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.to_thread(discard_download, root, downloaded.path))
        raise


def _drafter(
    job: PanelJob,
    backend: Backend,
    prompt_id: str,
    handle: PromptHandle | None,
    submitted_at: float,
    download_s: float,
) -> Callable[[int], tuple[AssetRecord, dict[str, Any]]]:
    """``draft(number)``: the record and the provenance of render ``number`` of the panel (it
    runs in a worker thread, so everything it reads is read here)."""
    panel = job.panel
    template = job.built.template  # read here: draft() runs in a worker thread
    timings = _timings(handle, submitted_at) if handle is not None else Timings()
    timings.download = round(download_s, 4)
    timings.total = round(time.monotonic() - submitted_at, 4)
    models = sorted(
        {
            str(v)
            for node in job.built.graph.values()
            for k, v in dict(node.get("inputs", {})).items()
            if k in MODEL_INPUTS and isinstance(v, str)
        }
    )

    def draft(number: int) -> tuple[AssetRecord, dict[str, Any]]:
        provenance: dict[str, Any] = {
            "project_id": panel.project_id,
            "shot_id": panel.shot_id,
            "version": panel.version,
            "render": number,
            "prompt_id": prompt_id,
            "server_url": backend.url,
            "comfyui_version": backend.version,
            "workflow_sha256": job.fingerprint,
            "seed": panel.seed,
            "take": panel.take,
            "profile": panel.profile,
            "checkpoint": panel.checkpoint,
            "template": template,
            "placeholder": backend.mock,
            "positive": panel.positive,
            "negative": panel.negative,
        }
        record = AssetRecord(
            asset_id=f"{panel.shot_id}_v{panel.version}_r{number:03d}",
            shot_id=panel.shot_id,
            version=panel.version,
            render=number,
            path=str(asset_relpath(panel.shot_id, panel.version, number)),
            sha256="",
            size=0,
            width=0,  # read from the image by finish_render
            height=0,
            placeholder=backend.mock,
            created_at=now_iso(),
            prompt_id=prompt_id,
            server_url=backend.url,
            comfyui_version=backend.version,
            workflow_sha256=job.fingerprint,
            seed=panel.seed,
            checkpoint=panel.checkpoint,
            models=models,
            template=template,
            timings=timings,
            take=panel.take,
            profile=panel.profile,
        )
        return record, provenance

    return draft


async def _server_chose_id(
    journal: Journal, ours: str, theirs: str, announced: dict[str, Any]
) -> str:
    """The server runs the prompt under an id of its own (an older ComfyUI ignores the one it
    is sent): the journal names that id, so a resume after a crash follows the prompt instead
    of rendering the panel again; ours is closed. Returns the server's id."""
    _log.debug("the server runs prompt %s as %s", ours, theirs)
    await asyncio.to_thread(
        journal.append, "submit", prompt_id=theirs, client_prompt_id=ours, **announced
    )
    await asyncio.to_thread(
        journal.append, "lost", prompt_id=ours, error=f"the server runs it as prompt {theirs}"
    )
    return theirs


async def run_on_backend(
    job: PanelJob,
    backend: Backend,
    *,
    journal: Journal,
    emit: EventSink,
    grace: float,
    store: RenderStore,
    release_slot: Callable[[], None],
) -> JobOutcome:
    """Render ``job`` on ``backend``. Raises :class:`Requeue` for transient trouble and a
    :class:`StoryCoreError` for a panel that cannot render (rejected, failed)."""
    started = time.monotonic()
    job.attempts += 1
    job.tried.append(backend.url)
    prompt_id = str(uuid.uuid4())
    handle: PromptHandle | None = None
    submitted = False
    try:
        names = await _upload_images(job, backend, journal)
        graph = bind_uploads(job.built, names)
        announced: dict[str, Any] = {
            "shot_id": job.shot_id,
            "backend": backend.url,
            "client_id": backend.client.client_id,
            "workflow_sha256": job.fingerprint,
            "filename_prefix": job.built.filename_prefix,
            "seed": job.panel.seed,
            "attempt": job.attempts,
        }
        await asyncio.to_thread(journal.append, "submit", prompt_id=prompt_id, **announced)
        submitted_at = time.monotonic()
        mark = {"shot_id": job.panel.shot_id, "take": job.panel.take, "prompt_id": prompt_id}
        extra = {"extra_pnginfo": {"storycore": mark}}
        handle = await backend.tracker.submit(
            graph,
            prompt_id=prompt_id,
            extra_data=extra,
            outputs=job.built.output_node_ids,
        )
        submitted = True
        if handle.prompt_id != prompt_id:
            prompt_id = await _server_chose_id(journal, prompt_id, handle.prompt_id, announced)
        _log.debug(
            "submitted %s as prompt %s to %s (attempt %d)",
            job.shot_id,
            prompt_id,
            backend.url,
            job.attempts,
        )
        emit(PanelSubmitted(job.shot_id, backend.url, prompt_id, job.attempts))
        result = await follow_prompt(handle, job.shot_id, emit, backend, grace)
        _log.debug(
            "prompt %s on %s settled: success via %s after %.3f s",
            prompt_id,
            backend.url,
            result.via,
            time.monotonic() - submitted_at,
        )
    except PromptRejected as err:
        _log.debug("prompt %s rejected by %s: %s", prompt_id, backend.url, err.message)
        await asyncio.to_thread(
            journal.append, "failed", prompt_id=prompt_id, error=journal_text(err)
        )
        release_slot()
        raise
    except (ExecutionFailed, PromptInterrupted) as err:
        _log.debug("prompt %s on %s settled: %s", prompt_id, backend.url, err.message)
        await asyncio.to_thread(
            journal.append, "failed", prompt_id=prompt_id, error=journal_text(err)
        )
        release_slot()
        raise
    except TRANSIENT as err:
        _log.debug(
            "prompt %s on %s: %s (%s)", prompt_id, backend.url, err.message, type(err).__name__
        )
        release_slot()
        gone = not submitted or handle is None or (isinstance(err, PromptLost) and handle.done())
        finished = None
        if gone:  # never reached the server, or the tracker saw it is neither queued nor done
            await asyncio.to_thread(
                journal.append, "lost", prompt_id=prompt_id, error=journal_text(err)
            )
        else:
            assert handle is not None
            finished = await withdraw(handle, backend, journal, err)
        if finished is None:
            raise Requeue(
                err, backend_down=isinstance(err, ServerUnreachable) or backend.down.is_set()
            ) from err
        result = finished
    except BaseException:
        release_slot()
        raise
    else:
        release_slot()
    try:
        record = await collect_output(
            job=job,
            backend=backend,
            result=result,
            store=store,
            submitted_at=submitted_at,
            handle=handle,
            prompt_id=prompt_id,
        )
    except UnsafePathError as err:
        await asyncio.to_thread(
            journal.append, "failed", prompt_id=prompt_id, error=journal_text(err)
        )
        raise
    except ServerUnreachable as err:
        # The server went away with the image (after the fetch's retries): render the panel
        # again rather than leave a hole in the board. A restarted server forgets its history,
        # so the next run could not find the image either.
        with contextlib.suppress(OSError):
            await asyncio.to_thread(
                journal.append, "lost", prompt_id=prompt_id, error=journal_text(err)
            )
        raise Requeue(err, backend_down=True) from err
    except (*TRANSIENT, AssetError) as err:
        # The image is rendered on the server; only fetching it failed (a flaky /view, a full
        # disk). The prompt stays open in the journal, so the next run fetches it from
        # /history instead of rendering it again.
        with contextlib.suppress(OSError):
            await asyncio.to_thread(
                journal.append, "download_failed", prompt_id=prompt_id, error=journal_text(err)
            )
        raise OutputNotFetched(
            f"rendered as prompt {prompt_id}, but the image could not be fetched: {err.message}",
            where=err.where,
            hint="free disk space or check the server; the next run fetches it without "
            "rendering it again",
        ) from err
    return JobOutcome(record=record, seconds=time.monotonic() - started, backend=backend.url)
