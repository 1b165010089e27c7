"""The job queue: FIFO with model affinity (`scheduling.pick`), one thread per worker, cancel, a job
re-run once when its worker is lost, and result retention for `fetch`.

Workers never talk to sockets: their events go to `publish`, which the server schedules onto its event
loop, so a slow or dead client can never stall a GPU or other clients. A single-GPU server has one
local worker whose thread runs each job directly, exactly as before workers existed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import images
from .jobs.base import Request
from .limits import Limits
from .protocol import ProtocolError, error_event
from .scheduling import job_model, pick
from .workers.base import JobSpec, Worker, WorkerLost
from .workers.pool import WorkerPool

log = logging.getLogger(__name__)

Event = dict[str, Any]
Publish = Callable[["Job", Event], None]
MAX_ATTEMPTS = 2  # a job whose worker is lost mid-run is run once more, elsewhere (same seed, same result)


@dataclass(eq=False)
class Job:
    id: str
    kind: str
    request: Request | None  # None once done: only the terminal event is retained
    owner: int  # connection id that submitted it (for per-client limits)
    state: str = "queued"  # queued | running | done
    cancel: threading.Event = field(default_factory=threading.Event)
    terminal: Event | None = None
    finished_at: float = 0.0
    size: int = 0
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # the submitting client's choice
    worker: Worker | None = None  # the one running it
    lost_on: list[Worker] = field(default_factory=list)  # workers that died running it
    model: str | None = None  # the checkpoint it needs (for affinity); set on submit

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = job_model(self.request)


class JobQueue:
    def __init__(self, pool: WorkerPool, limits: Limits, publish: Publish) -> None:
        self.pool = pool
        self.limits = limits
        self.publish = publish
        self.jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._idle: list[Worker] = []
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._stop = False

    def start(self) -> None:
        self.pool.start(self._add_worker, self._wake)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            for job in self._pending:
                job.cancel.set()
            for job in self.jobs.values():
                if job.state == "running" and job.worker is not None:
                    job.cancel.set()
                    job.worker.cancel(job.id)
            self._cond.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=30)
        self.pool.stop()

    # --- called from the event loop -------------------------------------------------------------

    def submit(self, job: Job) -> int:
        with self._cond:
            self._expire()
            if job.id in self.jobs:
                raise ProtocolError("duplicate_id", f"job id {job.id!r} is already in use", job.id)
            mine = sum(1 for j in self._pending if j.owner == job.owner)
            if mine >= self.limits.max_queued_per_client:
                raise ProtocolError(
                    "too_many_jobs",
                    f"{mine} jobs already queued by this client (limit {self.limits.max_queued_per_client})",
                    job.id,
                )
            self.jobs[job.id] = job
            self._pending.append(job)
            position = len(self._pending) - 1 + (1 if self._running() else 0)
            self._cond.notify_all()  # every free worker decides whether the job is its to take
        return position

    def cancel(self, job_id: str) -> Job:
        with self._cond:
            job = self.jobs.get(job_id)
            if job is None:
                raise ProtocolError("not_found", f"no job with id {job_id!r}", job_id)
            job.cancel.set()
            queued = job.state == "queued" and job in self._pending
            if queued:
                self._pending.remove(job)
                self._finish(job, {"type": "cancelled", "id": job.id})
            elif job.state == "running" and job.worker is not None:
                job.worker.cancel(job.id)  # a remote worker polls its own flag: forward it
        if queued:
            self._announce_positions()
        return job

    def positions(self) -> list[tuple[Job, int]]:
        with self._cond:
            offset = 1 if self._running() else 0
            return [(j, i + offset) for i, j in enumerate(self._pending)]

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._expire()
            return self.jobs.get(job_id)

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    # --- workers ---------------------------------------------------------------------------------

    def _running(self) -> bool:
        return any(j.state == "running" for j in self.jobs.values())

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _add_worker(self, worker: Worker) -> None:
        thread = threading.Thread(target=self._serve, args=(worker,), name=f"sdbridge-{worker.info.id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, worker: Worker) -> None:
        wait_ready = getattr(worker, "wait_ready", None)
        if wait_ready is not None:  # a remote worker: its process starts (imports torch) first
            try:
                wait_ready()
            except WorkerLost as exc:
                log.warning("worker %s did not start: %s", worker.info.id, exc)
                self.pool.lost(worker, during_job=False)
                return
        while True:
            job = self._next(worker)
            if job is None:
                return
            self._announce_positions()
            if not job.lost_on:  # a re-run is the same job to the client: it started already
                self.publish(job, {"type": "started", "id": job.id, "worker": worker.info.id})
            self._execute(worker, job)

    def _next(self, worker: Worker) -> Job | None:
        """Wait until there is a job for `worker`; None when the queue stops or the worker is drained."""
        with self._cond:
            if worker not in self._idle:
                self._idle.append(worker)
            try:
                while True:
                    if self._stop or not self.pool.usable(worker):
                        return None
                    job = pick(self._pending, worker, [w for w in self._idle if self.pool.usable(w)])
                    if job is not None:
                        break
                    self._cond.wait()
            finally:
                self._idle.remove(worker)
                self._cond.notify_all()  # who is idle changed: the others' choices may too
            self._pending.remove(job)
            job.state, job.worker = "running", worker
            worker.info.state, worker.info.job = "busy", job.id
            return job

    def _execute(self, worker: Worker, job: Job) -> None:
        assert job.request is not None
        spec = JobSpec(job.id, job.kind, job.request, job.preview_formats)
        try:
            event = worker.execute(spec, lambda ev: self.publish(job, ev), job.cancel)
        except WorkerLost as exc:
            log.warning("job %s: worker %s lost (%s)", job.id, worker.info.id, exc)
            self.pool.lost(worker, during_job=True)
            self._rerun_or_fail(worker, job)
            return
        finally:
            if worker.info.state == "busy":
                worker.info.state, worker.info.job = "idle", None
        self.pool.succeeded(worker)
        with self._cond:
            # Idle before the client hears the result: a job it sends next sees this worker free.
            self._idle.append(worker)
            self._finish(job, event)

    def _rerun_or_fail(self, worker: Worker, job: Job) -> None:
        with self._cond:
            job.lost_on.append(worker)
            job.worker = None
            if job.cancel.is_set():
                self._finish(job, {"type": "cancelled", "id": job.id})
            elif len(job.lost_on) < MAX_ATTEMPTS and not self._stop:
                job.state = "queued"
                self._pending.appendleft(job)  # it was the oldest: it stays first
                self._cond.notify_all()
            else:
                message = f"the worker running it was lost {len(job.lost_on)} times (last: {worker.info.host})"
                self._finish(job, error_event("worker_lost", message, job.id))

    def _finish(self, job: Job, event: Event) -> None:
        """Record the terminal event (caller holds the lock) and publish it."""
        job.state = "done"
        job.terminal = event
        job.finished_at = time.monotonic()
        job.size = sum(len(img.get("data", b"")) for img in event.get("images", []))
        job.request = None  # free the inputs; only the terminal event is retained
        job.worker = None
        self.publish(job, event)

    def _expire(self) -> None:
        """Drop retained results past the retention period or the byte budget (oldest first)."""
        now = time.monotonic()
        done = sorted((j for j in self.jobs.values() if j.state == "done"), key=lambda j: j.finished_at)
        total = sum(j.size for j in done)
        for j in done:
            if now - j.finished_at > self.limits.result_retention_s or total > self.limits.max_retained_bytes:
                total -= j.size
                del self.jobs[j.id]

    def _announce_positions(self) -> None:
        for job, pos in self.positions():
            self.publish(job, {"type": "queued", "id": job.id, "position": pos})
