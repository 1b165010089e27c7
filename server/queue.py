"""The job queue: fair scheduling between clients (`scheduling.FairScheduler`), one thread per worker,
cancel, a job re-run once when its worker is lost, and the journal.

Workers never talk to sockets: their events go to `publish`, which the server schedules onto its event
loop, so a slow or dead client can never stall a GPU or other clients. A single-GPU server has one
local worker whose thread runs each job directly. Every accepted job is in the store
(`store.JobStore`) before the client hears `queued`, and its terminal event is written there before
it is published, so a client that saw an event can fetch it after a crash — whichever worker ran it.

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

from .job import Event, Job, LiveStop
from .limits import Limits
from .protocol import ProtocolError, error_event
from .scheduling import FairScheduler
from .store import JobStore
from .workers.base import JobSpec, Worker, WorkerLost
from .workers.pool import WorkerPool

log = logging.getLogger(__name__)

Publish = Callable[["Job", Event], None]
LIVE_RESULTS = 16  # clients whose last live result is kept for reuse (one result each)
MAX_ATTEMPTS = 2  # a job whose worker is lost mid-run is run once more, elsewhere (same seed, same result)
REQUEUED = "the server is shutting down; the job stays queued and runs when it starts again"


class JobQueue:
    def __init__(self, pool: WorkerPool, limits: Limits, publish: Publish, store: JobStore | None = None) -> None:
        self.pool = pool
        self.limits = limits
        self.publish = publish
        self.store = store
        self.jobs: dict[str, Job] = {}
        self._pending: FairScheduler[Job] = FairScheduler()
        self._live_results: OrderedDict[str, tuple[str, Event]] = OrderedDict()  # owner -> (key, result)
        self._reserved: dict[str, str] = {}  # job id -> owner, between accept checks and `submit`
        self._idle: list[Worker] = []
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._stop = False

    def start(self) -> None:
        self.pool.start(self._add_worker, self._wake)

    def shutdown(self, timeout: float) -> list[Job]:
        """Stop taking jobs; running ones are cancelled at their next step and requeued (or finish), on
        every worker. → the running jobs whose worker did not let go of them within `timeout`."""
        with self._cond:
            first = not self._stop
            self._stop = True
            for job in self._running():
                job.stopping = True
                job.cancel.set()
                if job.worker is not None:
                    job.worker.cancel(job.id)  # a remote worker polls its own flag: forward it
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            stuck = [j for j in self._running() if j.worker is not None]
        if first:
            self.pool.stop()
        return stuck

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
            job.position = order.index(job) + self._offset()
            self._cond.notify_all()  # every free worker decides whether the job is its to take
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
            elif job.state == "running" and job.worker is not None:
                job.worker.cancel(job.id)  # a remote worker polls its own flag: forward it

    def position(self, job: Job) -> int:
        with self._cond:
            order = self._order()
            return order.index(job) + self._offset() if job in order else 0

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._expire()
            return self.jobs.get(job_id)

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

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
        for running in self._running():
            if running.live and running.owner == job.owner:
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

    def requeued(self, job: Job) -> None:
        """The run a shutdown interrupted does not count towards the job's attempts."""
        self._journal("requeued", job)

    # --- workers ---------------------------------------------------------------------------------

    def _running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == "running"]

    def _offset(self) -> int:
        return 1 if any(j.state == "running" for j in self.jobs.values()) else 0

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
        while (job := self._next(worker)) is not None:
            if not job.lost_on:  # a re-run is the same job to the client and the journal: it started already
                self._journal("started", job)
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
                    others = [w for w in self._idle if w is not worker and self.pool.usable(w)]
                    job = self._pending.pick(
                        worker.is_resident, usable=lambda j: worker not in j.lost_on, elsewhere=_held_by(others)
                    )
                    if job is not None and job.live and self._reuse(job):  # same inputs finished while it waited
                        continue
                    if job is not None:
                        break
                    self._cond.wait()
            finally:
                self._idle.remove(worker)
                self._cond.notify_all()  # who is idle changed: the others' choices may too
            job.state, job.worker = "running", worker
            worker.info.state, worker.info.job = "busy", job.id
            self._announce_positions()
            return job

    def _execute(self, worker: Worker, job: Job) -> None:
        assert job.request is not None
        spec = JobSpec(job.id, job.kind, job.request, job.preview_formats)
        try:
            event = worker.execute(spec, lambda ev: self.publish(job, ev), LiveStop(job, self._outdated))
        except WorkerLost as exc:
            log.warning("job %s: worker %s lost (%s)", job.id, worker.info.id, exc)
            self.pool.lost(worker, during_job=True)
            self._rerun_or_fail(worker, job)
            return
        finally:
            if worker.info.state == "busy":
                worker.info.state, worker.info.job = "idle", None
        self.pool.succeeded(worker)
        if event["type"] == "cancelled" and job.newer is not None and not job.cancel.is_set():
            event = {"type": "superseded", "id": job.id, "by": job.newer}  # stopped for a newer live frame
        if job.stopping and event["type"] == "cancelled":
            self._requeue_on_stop(job)
            return
        with self._cond:
            # Idle before the client hears the result: a job it sends next sees this worker free.
            self._idle.append(worker)
        self._remember(job, event)
        self._finish(job, event)

    def _rerun_or_fail(self, worker: Worker, job: Job) -> None:
        with self._cond:
            job.lost_on.append(worker)
            job.worker = None
            if job.stopping:
                pass  # the server is stopping: the job stays in the journal, below
            elif job.cancel.is_set():
                event: Event | None = {"type": "cancelled", "id": job.id}
            elif len(job.lost_on) < MAX_ATTEMPTS:
                job.state = "queued"
                self._pending.add(job, first=True)  # it had its turn: it stays first
                self._cond.notify_all()
                return
            else:
                message = f"the worker running it was lost {len(job.lost_on)} times (last: {worker.info.host})"
                event = error_event("worker_lost", message, job.id)
        if job.stopping:
            self._requeue_on_stop(job)
        else:
            self._finish(job, event)

    def _requeue_on_stop(self, job: Job) -> None:
        self.publish(job, requeued_event(job.id))
        self.requeued(job)

    def _finish(self, job: Job, event: Event) -> None:
        """Journal the terminal event (writing a large result takes a moment: without the lock, so
        the event loop's calls don't wait for it), then publish it — once per job, whichever worker ran it.

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
            job.worker = None
            self.publish(job, event)

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
        """The predicted start order: models running now are loaded once they end, idle workers keep theirs."""
        running = {j.model for j in self._running() if j.model is not None}
        idle = list(self._idle)
        if running:
            return self._pending.order(lambda name: name in running or any(w.is_resident(name) for w in idle))
        return self._pending.order(lambda name: any(w.is_resident(name) for w in idle or self.pool.workers))

    def _announce_positions(self, order: list[Job] | None = None) -> None:
        """Tell every queued job whose place changed where it is now (caller holds the lock)."""
        offset = self._offset()
        for i, job in enumerate(self._order() if order is None else order):
            if job.position != i + offset:
                job.position = i + offset
                self.publish(job, {"type": "queued", "id": job.id, "position": job.position})


def _held_by(workers: list[Worker]) -> Callable[[Job], bool]:
    """Whether one of `workers` (idle ones) has the job's model loaded and may run it: it is theirs to take."""
    return lambda job: job.model is not None and any(w.is_resident(job.model) and w not in job.lost_on for w in workers)


def requeued_event(job_id: str) -> Event:
    """What a running job's clients hear when the server stops: it ends here, and runs again later."""
    return {"type": "cancelled", "id": job_id, "requeued": True, "message": REQUEUED}
