"""The job queue: one GPU worker thread, fair scheduling between clients, cancel, and the journal.

The worker never talks to sockets: it hands events to `publish`, which the server schedules onto
its event loop, so a slow or dead client can never stall the GPU or other clients. Every accepted job
is in the store (`store.JobStore`) before the client hears `queued`, and its terminal event is
written there before it is published, so a client that saw an event can fetch it after a crash.

Live frames (docs/protocol.md, "Live frames"): at most one pending frame per client (a newer one
takes its place in the fair turns and it ends `superseded`), a running frame stopped at its next step
once a newer one waits and it is older than `limits.live_interrupt_ms`, and a frame whose inputs equal
the client's last live result answered with that result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import images
from .errors import Cancelled, JobError
from .jobs import KINDS
from .jobs.base import JobContext, Request
from .limits import Limits
from .models.registry import ModelManager
from .pipelines.preview import Preview
from .protocol import ProtocolError, error_event
from .results import failure_event, rect_event, result_event
from .scheduling import FairScheduler
from .store import JobStore

log = logging.getLogger(__name__)

Event = dict[str, Any]
Publish = Callable[["Job", Event], None]
PREVIEW_INTERVAL_S = 0.25
LIVE_RESULTS = 16  # clients whose last live result is kept for reuse (one result each)
REQUEUED = "the server is shutting down; the job stays queued and runs when it starts again"


@dataclass(eq=False)  # identity semantics: jobs live in the scheduler's queues
class Job:
    id: str
    kind: str
    request: Request | None  # None once done: only the terminal event is retained
    owner: str  # token-scoped client id: fairness, limits and who may cancel/fetch it
    state: str = "queued"  # queued | running | done
    cancel: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False  # cancelled by a server shutdown: requeued, not finished
    terminal: Event | None = None  # only when the store could not keep it
    finished_at: float = 0.0  # wall clock, so retention counts across restarts
    size: int = 0
    position: int | None = None  # the last position announced
    last_preview: float = float("-inf")  # the first step always previews
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # the submitting client's choice
    live: bool = False  # a live frame: latest frame wins
    live_key: str | None = None  # content hash of its inputs (None: never reused)
    submitted: float = field(default_factory=time.monotonic)
    newer: str | None = None  # while running: the id of its client's newest live frame since

    @property
    def model(self) -> str | None:
        gen = getattr(self.request, "gen", None)
        return getattr(gen, "model", None)


class JobQueue:
    def __init__(self, models: ModelManager, limits: Limits, publish: Publish, store: JobStore | None = None) -> None:
        self.models = models
        self.limits = limits
        self.publish = publish
        self.store = store
        self.jobs: dict[str, Job] = {}
        self.running: Job | None = None
        self._pending: FairScheduler[Job] = FairScheduler()
        self._live_results: OrderedDict[str, tuple[str, Event]] = OrderedDict()  # owner -> (key, result)
        self._reserved: dict[str, str] = {}  # job id -> owner, between accept checks and `submit`
        self._cond = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._run, name="sdbridge-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def shutdown(self, timeout: float) -> Job | None:
        """Stop taking jobs; the running one is cancelled at its next step and requeued (or finishes).
        → the running job if the worker did not let go of it within `timeout`."""
        with self._cond:
            self._stop = True
            job = self.running
            if job is not None:
                job.stopping = True
                job.cancel.set()
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout)
        return job if self._worker.is_alive() and job is not None and job.state == "running" else None

    def busy(self) -> bool:
        """Whether the worker is still inside a job (after `shutdown`: one that did not let go in time)."""
        return self._worker.is_alive()

    # --- called from the event loop -------------------------------------------------------------

    def reserve(self, job_id: str, owner: str) -> None:
        """Claim `job_id` for `owner` before its inputs are parsed and journaled, or refuse it."""
        with self._cond:
            self._expire()
            if job_id in self.jobs or job_id in self._reserved:
                raise ProtocolError("duplicate_id", f"job id {job_id!r} is already in use", job_id)
            mine = self._pending.count(owner) + sum(1 for o in self._reserved.values() if o == owner)
            if mine >= self.limits.max_queued_per_client:
                raise ProtocolError(
                    "too_many_jobs",
                    f"{mine} jobs already queued by this client (limit {self.limits.max_queued_per_client})",
                    job_id,
                )
            total = len(self._pending) + len(self._reserved)
            if total >= self.limits.max_queued_total:
                raise ProtocolError(
                    "too_many_jobs", f"the server's queue is full ({total} jobs); try again later", job_id
                )
            self._reserved[job_id] = owner

    def accepting(self, job_id: str) -> bool:
        """Whether `job_id` is being parsed and journaled right now (not yet queued, not refused)."""
        with self._cond:
            return job_id in self._reserved

    def release(self, job_id: str) -> None:
        with self._cond:
            self._reserved.pop(job_id, None)

    def submit(self, job: Job) -> int:
        """Queue a reserved (or, on start, a journaled) job. → its position, which the caller tells its
        client at once; the jobs it overtakes (fair scheduling) hear theirs."""
        with self._cond:
            self._reserved.pop(job.id, None)
            self.jobs[job.id] = job
            if job.live and self._reuse(job):
                self._supersede_for(job, None)
                return 0
            if not (job.live and self._supersede_for(job, job)):
                self._pending.add(job)
            order = self._order()
            job.position = order.index(job) + (1 if self.running else 0)
            self._cond.notify()
            self._announce_positions(order)
            return job.position

    def retain(self, job: Job) -> None:
        """A finished job from the journal: fetchable until its retention ends."""
        with self._cond:
            self.jobs[job.id] = job

    def cancel(self, job_id: str) -> None:
        with self._cond:
            job = self.jobs.get(job_id)
            if job is None or job.state == "done":
                return
            job.cancel.set()
            if job.state == "queued" and self._pending.remove(job):
                self._finish(job, {"type": "cancelled", "id": job.id})
                self._announce_positions()

    def position(self, job: Job) -> int:
        with self._cond:
            order = self._order()
            return order.index(job) + (1 if self.running else 0) if job in order else 0

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._expire()
            return self.jobs.get(job_id)

    def terminal(self, job: Job) -> Event | None:
        """The retained terminal event of a finished job, with its images (None: expired meanwhile)."""
        if job.terminal is not None or self.store is None:
            return job.terminal
        try:
            return self.store.terminal(job.id)
        except OSError:
            log.exception("reading the result of %s failed", job.id)
            return None

    # --- live frames (caller holds the lock) -----------------------------------------------------

    def _supersede_for(self, job: Job, taking_place: Job | None) -> bool:
        """`job` is its client's newest live frame: its pending frame ends (`taking_place`, when given,
        takes its turn; → whether it did) and its running frame learns of it."""
        replaced = False
        for old in [j for j in self._pending if j.live and j.owner == job.owner]:
            if taking_place is not None and not replaced:
                replaced = self._pending.replace(old, taking_place)
            else:
                self._pending.remove(old)
            old.cancel.set()
            self._finish(old, {"type": "superseded", "id": old.id, "by": job.id})
        running = self.running
        if running is not None and running.live and running.owner == job.owner:
            running.newer = job.id
        return replaced

    def _outdated(self, job: Job) -> bool:
        """A running live frame to stop at this step: a newer frame exists and this one is too old."""
        if job.newer is None:
            return False
        return (time.monotonic() - job.submitted) * 1000 >= self.limits.live_interrupt_ms

    def _reuse(self, job: Job) -> bool:
        """Answer `job` with its client's last live result when its inputs are the same."""
        last = self._live_results.get(job.owner)
        if job.live_key is None or last is None or last[0] != job.live_key:
            return False
        result = last[1]
        self._finish(job, result | {"id": job.id, "params": result["params"] | {"reused": True}})
        return True

    def _remember(self, job: Job, event: Event) -> None:
        if job.live and job.live_key is not None and event["type"] == "result":
            with self._cond:
                self._live_results[job.owner] = (job.live_key, event)
                self._live_results.move_to_end(job.owner)
                while len(self._live_results) > LIVE_RESULTS:
                    self._live_results.popitem(last=False)

    # --- worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not len(self._pending) and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._pending.pick(self.models.is_resident)
                assert job is not None
                if job.live and self._reuse(job):  # the same inputs finished while it waited
                    continue
                job.state = "running"
                self.running = job
                self._announce_positions()
            self._journal("started", job)
            self.publish(job, {"type": "started", "id": job.id})
            self._execute(job)
            with self._cond:
                self.running = None

    def _execute(self, job: Job) -> None:
        assert job.request is not None
        fmt = job.request.result_format
        ctx = JobContext(
            models=self.models,
            limits=self.limits,
            progress=lambda step, total, preview: self._progress(job, step, total, preview),
            cancelled=lambda: job.cancel.is_set() or self._outdated(job),
            partial=lambda img: self.publish(job, {"type": "partial", "id": job.id, "image": rect_event(img, fmt)}),
            plan=lambda plan: self.publish(job, {"type": "plan", "id": job.id, **plan}),
        )
        try:
            if job.cancel.is_set():
                raise Cancelled
            result = KINDS[job.kind].run(job.request, ctx)
            event = result_event(job.id, result, fmt)
        except Cancelled:
            stale = job.newer is not None and not job.cancel.is_set()
            event = (
                {"type": "superseded", "id": job.id, "by": job.newer} if stale else {"type": "cancelled", "id": job.id}
            )
        except (ProtocolError, JobError) as exc:
            event = error_event(exc.code, exc.message, job.id)
        except Exception as exc:  # a job failure must never take the worker down
            event = failure_event(job.id, exc)
        finally:
            self.models.end_job()  # LoRA patches / VAE overrides never leak into the next job
        if job.stopping and event["type"] == "cancelled":
            self.publish(job, requeued_event(job.id))
            self.requeued(job)
            return
        self._remember(job, event)
        self._finish(job, event)

    def _progress(self, job: Job, step: int, total: int, preview: Preview) -> None:
        ev: Event = {"type": "progress", "id": job.id, "step": step, "total": total}
        now = time.monotonic()
        # Previews are throttled: they cost an encode and bandwidth, and nobody watches 30 fps.
        if preview is not None and (now - job.last_preview >= PREVIEW_INTERVAL_S or step == total):
            job.last_preview = now
            pixels = preview() if callable(preview) else preview  # lazy: made only when sent
            thumb = images.preview_thumbnail(pixels)
            fmt, data = images.encode_preview(thumb, job.preview_formats)
            ev["preview"] = {"format": fmt, "data": data, "w": thumb.shape[1], "h": thumb.shape[0]}
        self.publish(job, ev)

    def _finish(self, job: Job, event: Event) -> None:
        """Journal the terminal event (writing a large result takes a moment: without the lock, so
        the event loop's calls don't wait for it), then publish it.

        The event object is shared by every connection that sends it, so nobody may change it."""
        size = None
        if self.store is not None:
            try:
                size = self.store.finish(job.id, event)
            except Exception:  # disk full, store closed by a shutdown: keep it in memory instead
                log.exception("journaling the end of %s failed", job.id)
        with self._cond:
            if size is None:
                job.terminal = event
                size = sum(len(img.get("data", b"")) for img in event.get("images", []))
            job.state = "done"
            job.finished_at = time.time()
            job.size = size
            job.request = None  # free the inputs; only the terminal event is retained
            self.publish(job, event)

    def requeued(self, job: Job) -> None:
        """The run a shutdown interrupted does not count towards the job's attempts."""
        self._journal("requeued", job)

    def _journal(self, what: str, job: Job) -> None:
        if self.store is None:
            return
        try:
            getattr(self.store, what)(job.id)
        except Exception:  # the journal is best effort once a job runs; the run itself must go on
            log.exception("journaling %s of %s failed", what, job.id)

    def _expire(self) -> None:
        """Drop retained results past the retention period or the byte budget (oldest first)."""
        now = time.time()
        done = sorted((j for j in self.jobs.values() if j.state == "done"), key=lambda j: j.finished_at)
        total = sum(j.size for j in done)
        gone = []
        for j in done:
            if now - j.finished_at > self.limits.result_retention_s or total > self.limits.max_retained_bytes:
                total -= j.size
                del self.jobs[j.id]
                gone.append(j.id)
        if gone and self.store is not None:
            self.store.delete(gone)

    def _order(self) -> list[Job]:
        running = self.running
        if running is not None and running.model is not None:
            model = running.model
            return self._pending.order(lambda name: name == model)  # what is loaded once it ends
        return self._pending.order(self.models.is_resident)

    def _announce_positions(self, order: list[Job] | None = None) -> None:
        """Tell every queued job whose place changed where it is now (caller holds the lock)."""
        offset = 1 if self.running else 0
        for i, job in enumerate(self._order() if order is None else order):
            if job.position != i + offset:
                job.position = i + offset
                self.publish(job, {"type": "queued", "id": job.id, "position": job.position})


def requeued_event(job_id: str) -> Event:
    """What a running job's clients hear when the server stops: it ends here, and runs again later."""
    return {"type": "cancelled", "id": job_id, "requeued": True, "message": REQUEUED}
