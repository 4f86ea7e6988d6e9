"""The Image Engine: render a whole board across a pool of ComfyUI servers, resumably.

The run, top to bottom:

1. load the project and resolve its panels; build every graph (pure) and its cache key
   (graphs are built again when needed, never all held at once);
2. connect to the backends (or start the in-process emulator: ``--mock`` / mock fallback);
3. preflight every graph against the server's ``/object_info`` and model lists;
4. skip panels whose active render matches the cache key and whose file is intact;
5. reconcile prompts the journal says were open (a crash, ``kill -9``, Ctrl-C last time);
6. feed each backend's queue ``queue_depth`` deep, grouped by checkpoint, least-loaded first;
   a backend that dies has its panels resubmitted elsewhere; one that returns is used again;
7. after each panel: image fetched into memory, provenance added, image and sidecar written,
   the journal's ``done`` fsynced (see :mod:`._persist`); ``project.json`` saved at most once a
   second and at the end; the storyboard sheet refreshed at the end.

Ctrl-C once (:meth:`ImageEngine.request_stop`): stop submitting, wait (bounded) for running
panels. Twice (:meth:`ImageEngine.request_cancel`): cancel them on the server and save.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from storycore._lock import ProjectLock
from storycore.config import Settings
from storycore.diagnostics import Diagnosis, DiagnosticHistory, RetryPolicy, Strategy, classify
from storycore.engine._backends import (
    Backend,
)
from storycore.engine._connect import connect_pool
from storycore.engine._events import (
    EngineEvent,
    EventSink,
    Notice,
    PanelDone,
    PanelFailed,
    PanelSkipped,
    RunStarted,
)
from storycore.engine._jobs import (
    JobOutcome,
    PanelJob,
    Requeue,
    run_on_backend,
    unexpected_error,
)
from storycore.engine._live import LiveStatus
from storycore.engine._outputs import check_render_targets
from storycore.engine._persist import ProjectWriter
from storycore.engine._plan import plan_board, skip_cached
from storycore.engine._prepare import graph_options, ready_jobs
from storycore.engine._previews import PreviewStore
from storycore.engine._request import RenderRequest
from storycore.engine._resume import reconcile_journal
from storycore.engine._schedule import mark_down, schedule
from storycore.engine._summary import PanelOutcome, RenderSummary
from storycore.engine._takes import ActiveTakes, plan_run
from storycore.errors import (
    OutputNotFetched,
    ProjectError,
    RenderError,
    StoryCoreError,
)
from storycore.journal import Journal
from storycore.monitoring import MonitoringSession, PerformanceMonitor
from storycore.panels import Panel, split_key
from storycore.project import Project, load_project, storyboard_warnings
from storycore.workflows import GraphOptions

__all__ = ["ImageEngine", "RenderRequest"]

_log = logging.getLogger("storycore.engine")


@dataclass
class _Run:
    project: Project
    journal: Journal
    writer: ProjectWriter
    outcomes: dict[str, PanelOutcome]
    pending: deque[PanelJob] = field(default_factory=deque)
    backends: list[Backend] = field(default_factory=list)
    in_flight: dict[str, tuple[PanelJob, Backend, str | None]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    mock: bool = False
    monitor: PerformanceMonitor | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    active_takes: ActiveTakes | None = None
    render_seconds: float | None = None  # wall time from the first submission to the last panel


class ImageEngine:
    """Renders a project's panels. ``on_event`` receives every :class:`EngineEvent`."""

    def __init__(self, settings: Settings, *, on_event: EventSink | None = None) -> None:
        self.settings = settings
        self._retry_policy = RetryPolicy.from_settings(settings.comfyui.max_retries)
        self._sink = on_event
        self.stopping = False
        self.cancelling = False
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ control (signal-safe)
    def request_stop(self) -> None:
        """Stop submitting; running panels finish (bounded by ``graceful_shutdown``)."""
        self.stopping = True
        if self._wake is not None:
            self._wake.set()

    def request_cancel(self) -> None:
        """Cancel running panels on their servers too."""
        self.stopping = True
        self.cancelling = True
        if self._wake is not None:
            self._wake.set()

    def emit(self, event: EngineEvent) -> None:
        if self._sink is not None:
            self._sink(event)

    # ------------------------------------------------------------------ the run
    async def render(self, request: RenderRequest) -> RenderSummary:
        started = time.monotonic()
        project = await asyncio.to_thread(load_project, request.project)
        for warning in storyboard_warnings(project):  # typos such as technical.stpes
            self.emit(Notice("warning", warning.text()))
        # Reference paths are checked on disk (links, allowed folders): off the event loop.
        plan = await asyncio.to_thread(plan_run, self.settings, project, request)
        project.drop_shots()  # the panels hold what the run needs
        panels, order, references = plan.panels, plan.order, plan.references
        skipped = {
            shot_id: PanelOutcome(shot_id, "skipped", reason=why)
            for shot_id, why in plan.skipped.items()
        }
        if request.approved and not panels and order:
            raise ProjectError(
                "no shot has an approved take, so there is nothing to render again",
                where=str(project.root),
                hint="approve the takes to keep first (storycore takes approve SHOT RENDER, or "
                "on the review page), then run --approved again",
            )
        for shot_id, why in plan.skipped.items():
            self.emit(PanelSkipped(shot_id, why, None))
        options = graph_options(self.settings)
        if request.dry_run:  # no server started or contacted, nothing written
            outcomes = await plan_board(self.settings, project, panels, options, self.emit)
            planned = {o.shot_id: o for o in outcomes} | skipped
            return RenderSummary(
                project=project.root,
                outcomes=[planned[key] for key in order if key in planned],
                elapsed=time.monotonic() - started,
                mock=False,
                backends=[],
                dry_run=True,
            )
        journal = Journal(project.root)
        writer = ProjectWriter(
            project, journal, notify=lambda text: self.emit(Notice("warning", text))
        )
        run = _Run(project, journal, writer, outcomes=dict(skipped))
        self._wake, sink = run.changed, self._sink
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(journal.close)
                stack.enter_context(ProjectLock(project.root, "generate-images"))
                shot_ids = list(dict.fromkeys(p.shot_id for p in panels))  # a planted link stops
                # the run here
                await asyncio.to_thread(check_render_targets, project.root, shot_ids)
                await stack.enter_async_context(run.writer)
                # .storycore/live.json for the review page: every event, previews included
                live = LiveStatus(project.root, sink, profile=request.profile)
                await stack.enter_async_context(live)
                previews = PreviewStore(project.root, live.observe, lambda: run.backends)
                self._sink = (await stack.enter_async_context(previews)).observe
                adopted = await asyncio.to_thread(run.writer.adopt_unrecorded)
                if adopted:
                    self.emit(
                        Notice(
                            "info",
                            f"recovered {len(adopted)} finished panel(s) from the journal "
                            "that the last run could not record",
                        )
                    )
                session = MonitoringSession.from_settings(self.settings.metrics, project.root)
                run.monitor = await stack.enter_async_context(session)
                run.backends = await connect_pool(
                    self.settings,
                    self.emit,
                    urls=request.backends,
                    mock=request.mock,
                    fallback=request.fallback,
                    project=project,
                    panels=panels,
                    options=options,
                    monitor=run.monitor,
                    changed=run.changed,
                    stack=stack,
                    desktop_port=request.desktop_port,
                )
                for backend in run.backends:
                    stack.push_async_callback(backend.close)
                run.mock = all(b.mock for b in run.backends)
                await self._render_board(run, request, panels, options, references)
        except OSError as exc:
            raise RenderError(
                f"cannot write into the project ({exc.strerror or exc}); finished panels are "
                "kept and the journal lets the next run resume",
                where=str(exc.filename or project.root),
                hint="free disk space or fix the folder's permissions, then run again",
            ) from exc
        finally:
            self._wake, self._sink = None, sink
            if run.diagnoses:
                history = DiagnosticHistory.for_project(project.root)
                for diagnosis in run.diagnoses:
                    await asyncio.to_thread(history.record, diagnosis)
        outcomes = [run.outcomes.get(s) or self._unfinished(s) for s in order]
        return RenderSummary(
            project=project.root,
            outcomes=outcomes,
            elapsed=time.monotonic() - started,
            mock=run.mock,
            backends=[b.url for b in run.backends],
            stopped=self.stopping,
            render_seconds=run.render_seconds,
        )

    async def _render_board(
        self,
        run: _Run,
        request: RenderRequest,
        panels: Sequence[Panel],
        options: GraphOptions,
        references: Sequence[Panel] = (),
    ) -> None:
        project = run.project
        looked_up = {p.key for p in references}
        jobs, failed, notices = await ready_jobs(
            self.settings, project, [*panels, *references], options, run.backends
        )
        for text in notices:
            self.emit(Notice("warning", text))
        for shot_id, err in failed.items():
            if shot_id not in looked_up:
                self.fail(run, shot_id, err)
        shown = [j.fingerprint for j in jobs if j.shot_id in looked_up]
        jobs = [j for j in jobs if j.shot_id not in looked_up]
        to_render, run.active_takes = await skip_cached(
            run.writer,
            jobs,
            force=request.force,
            shown=shown,
            mock=run.mock,
            emit=self.emit,
            outcomes=run.outcomes,
        )
        self.emit(
            RunStarted(
                total=len(panels),
                to_render=len(to_render),
                backends=tuple(b.url for b in run.backends),
                mock=run.mock,
                project=str(project.root),
            )
        )
        began = time.monotonic()
        to_render = await reconcile_journal(self, run, to_render)
        await schedule(self, run, to_render)
        run.render_seconds = time.monotonic() - began
        await self._finish_project(run)

        # ------------------------------------------------------------------ one panel

    async def run_job(self, run: _Run, backend: Backend, job: PanelJob) -> None:
        """Render ``job`` on ``backend`` and record what came of it (a scheduler task)."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                backend.in_flight -= 1
                backend.wake.set()

        run.in_flight[job.shot_id] = (job, backend, None)
        sink = self._sink

        def emit(event: EngineEvent) -> None:
            from storycore.engine._events import PanelSubmitted

            if isinstance(event, PanelSubmitted):
                run.in_flight[job.shot_id] = (job, backend, event.prompt_id)
            if sink is not None:
                sink(event)

        try:
            outcome = await run_on_backend(
                job,
                backend,
                journal=run.journal,
                emit=emit,
                grace=self.settings.comfyui.failover_grace,
                store=run.writer,
                release_slot=release,
            )
            await self.record_outcome(run, job, outcome)
        except Requeue as requeue:
            if requeue.backend_down:
                mark_down(self, run, backend, requeue.error.message)
            retry = job.attempts <= self.settings.comfyui.max_retries
            self.emit(
                PanelFailed(
                    job.shot_id,
                    requeue.error.message,
                    where=requeue.error.where,
                    hint="will be submitted again" if retry else requeue.error.hint,
                    will_retry=retry,
                )
            )
            if retry:
                self._retry_later(run, job)
            else:
                self.fail(run, job.shot_id, requeue.error)
        except OSError as exc:  # the project folder itself cannot be written (disk full...)
            self.fail(
                run,
                job.shot_id,
                RenderError(
                    f"cannot write into the project ({exc.strerror or exc})",
                    where=str(exc.filename or run.project.root),
                    hint="free disk space or fix the folder's permissions, then run again",
                ),
            )
        except StoryCoreError as err:
            diagnosis = classify(err)
            limit = min(diagnosis.retry_limit, self.settings.comfyui.max_retries)
            retry = diagnosis.strategy in (Strategy.RETRY, Strategy.FAILOVER)
            if retry and job.attempts <= limit and not isinstance(err, OutputNotFetched):
                run.diagnoses.append(diagnosis)
                self.emit(
                    PanelFailed(
                        job.shot_id,
                        err.message,
                        where=err.where,
                        hint=diagnosis.suggestion,
                        will_retry=True,
                    )
                )
                self._retry_later(run, job)
            else:
                self.fail(run, job.shot_id, err)
        except Exception as exc:  # a bug, or a server answer no check foresaw
            self.fail(run, job.shot_id, unexpected_error(exc, backend.url))
        finally:
            release()
            job.release()
            run.in_flight.pop(job.shot_id, None)
            current = asyncio.current_task()
            if current is not None:
                run.tasks.discard(current)  # before waking the waiter, so it sees us gone
            run.changed.set()
            for other in run.backends:
                other.wake.set()

    def _unfinished(self, shot_id: str) -> PanelOutcome:
        """A panel the run ended without: stopped by the user, else failed (never silent)."""
        if self.stopping:
            return PanelOutcome(shot_id, "stopped")
        return PanelOutcome(
            shot_id,
            "failed",
            error=f"{shot_id}: the run ended before this panel was rendered (a StoryCore bug). "
            "Run again (with -v for details); finished panels are kept.",
        )

    def _retry_later(self, run: _Run, job: PanelJob) -> None:
        """Queue ``job`` again after a bounded, jittered backoff (0.5 s doubling, at most 10 s):
        a server in trouble is not hammered, and another server may take it meanwhile."""
        delay = self._retry_policy.delay(max(1, job.attempts))
        job.not_before = time.monotonic() + delay
        _log.debug("%s: retry %d in %.2f s", job.shot_id, job.attempts, delay)
        run.pending.appendleft(job)

    async def record_outcome(self, run: _Run, job: PanelJob, outcome: JobOutcome) -> None:
        record = outcome.record
        chooser = run.active_takes.should_activate if run.active_takes is not None else None
        await run.writer.add(record, chooser)
        if run.monitor is not None:
            timings = record.timings
            phases = {
                "queue_wait": timings.queued,
                "model_load": timings.model_load,
                "sampling": timings.sampling,
            }
            alerts = run.monitor.record_panel(
                job.shot_id,
                outcome.seconds,
                phases={k: v for k, v in phases.items() if v is not None},
            )
            if timings.download is not None:
                alerts += run.monitor.record_timing("download", timings.download, panel=job.shot_id)
            alerts += run.monitor.record_outcome(True)
            for alert in alerts:
                self.emit(Notice("warning", f"{job.shot_id}: {alert}"))
        run.outcomes[job.shot_id] = PanelOutcome(
            job.shot_id,
            "placeholder" if record.placeholder else "rendered",
            path=record.path,
            seconds=outcome.seconds,
            execution_s=record.timings.execution,
            queued_s=record.timings.queued,
            backend=outcome.backend,
            prompt_id=record.prompt_id,
            placeholder=record.placeholder,
        )
        self.emit(
            PanelDone(
                job.shot_id,
                record.path,
                outcome.seconds,
                record.placeholder,
                outcome.backend,
                record.prompt_id or "",
                resumed=outcome.resumed,
                execution_s=record.timings.execution,
                queued_s=record.timings.queued,
            )
        )

    def fail(self, run: _Run, shot_id: str, err: StoryCoreError) -> None:
        """Record that the panel ``shot_id`` (a run's key: ``SHOT`` or ``SHOT#N``) failed. A
        later take that fails leaves a shot that shows a take as it is (its error noted)."""
        diagnosis = classify(err)
        run.diagnoses.append(diagnosis)
        run.outcomes[shot_id] = PanelOutcome(shot_id, "failed", error=err.paragraph())
        shot, take = split_key(shot_id)
        active = run.writer.active(shot) if take != 1 else None
        if active is None:
            run.writer.set_status(shot, "failed", error=err.message)
        else:
            status = "placeholder" if active.placeholder else "rendered"
            run.writer.set_status(shot, status, error=err.message)
        if run.monitor is not None:
            run.monitor.record_outcome(False)
        self.emit(
            PanelFailed(
                shot_id,
                err.message,
                where=err.where,
                hint=err.hint or diagnosis.suggestion,
                details={
                    "category": diagnosis.category.value,
                    "severity": diagnosis.severity.value,
                    "code": diagnosis.code,
                    "suggestion": diagnosis.suggestion,
                },
            )
        )

    async def _finish_project(self, run: _Run) -> None:
        statuses = {o.status for o in run.outcomes.values()}
        if "failed" in statuses:
            state = "partial" if statuses - {"failed"} else "failed"
        elif "placeholder" in statuses:
            state = "placeholders"
        elif self.stopping:
            state = "partial"
        else:
            state = "done"
        generation = run.project.data.setdefault("generation_status", {})
        if isinstance(generation, dict):
            generation["image_generation"] = state
        run.writer.mark_dirty()
        await run.writer.flush(final=True)
        from storycore.review import write_board

        try:
            await asyncio.to_thread(write_board, run.project)
        except (StoryCoreError, OSError) as err:
            self.emit(Notice("warning", f"could not refresh the storyboard sheet: {err}"))
