"""Job queue with one GPU worker thread, cancel, live frames, and result retention for `fetch`.

The worker never talks to sockets: it hands events to `publish`, which the server schedules onto
its event loop, so a slow or dead client can never stall the GPU or other clients.

Scheduling policy (`fair_order`): clients take turns — the next job is the oldest one of the client
served least recently — so a painter whose live frame is always waiting and a client with a long
queue alternate, and neither starves the other. Live frames (docs/protocol.md, "Live frames") add:
at most one pending frame per client (a newer one supersedes it), a running frame interrupted at its
next step once a newer one waits and it is older than `limits.live_interrupt_ms`, and a frame whose
inputs equal the client's last live result answered with that result.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import images
from .errors import Cancelled, JobError
from .jobs import KINDS
from .jobs.base import JobContext, JobResult, Request, ResultFormat, ResultImage
from .limits import Limits
from .models.registry import ModelManager
from .pipelines.preview import Preview
from .protocol import ProtocolError, error_event

log = logging.getLogger(__name__)

Event = dict[str, Any]
Publish = Callable[["Job", Event], None]
PREVIEW_INTERVAL_S = 0.25
LIVE_RESULTS = 16  # clients whose last live result is kept for reuse (one result each)


@dataclass
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
    last_preview: float = float("-inf")  # the first step always previews
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # the submitting client's choice
    live: bool = False  # a live frame: latest frame wins
    live_key: str | None = None  # content hash of its inputs (None: never reused)
    submitted: float = field(default_factory=time.monotonic)
    newer: str | None = None  # while running: the id of its client's newest live frame since


def fair_order(pending: Sequence[Job], served: dict[int, int]) -> list[Job]:
    """The order the worker will take `pending` in: repeatedly the oldest job of the client whose
    last turn (`served`: owner -> turn number, absent: never) is longest ago."""
    turns = dict(served)
    left = list(pending)
    order: list[Job] = []
    tick = max(turns.values(), default=0)
    while left:
        i = min(range(len(left)), key=lambda k: (turns.get(left[k].owner, -1), k))
        job = left.pop(i)
        tick += 1
        turns[job.owner] = tick
        order.append(job)
    return order


class JobQueue:
    def __init__(self, models: ModelManager, limits: Limits, publish: Publish) -> None:
        self.models = models
        self.limits = limits
        self.publish = publish
        self.jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._served: dict[int, int] = {}  # owner -> the worker's turn number when last served
        self._turn = 0
        self._live_results: OrderedDict[int, tuple[str, Event]] = OrderedDict()  # owner -> (key, result)
        self._cond = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._run, name="sdbridge-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            for job in self._pending:
                job.cancel.set()
            self._cond.notify_all()
        self._worker.join(timeout=30)

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
            if job.live:
                self._supersede_for(job)
                if self._reuse(job):
                    return 0
            self._pending.append(job)
            position = self._position(job)
            self._cond.notify()
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
        if queued:
            self._announce_positions()
        return job

    def positions(self) -> list[tuple[Job, int]]:
        with self._cond:
            offset = 1 if self._running() else 0
            return [(j, i + offset) for i, j in enumerate(fair_order(self._pending, self._served))]

    def _position(self, job: Job) -> int:
        return fair_order(self._pending, self._served).index(job) + (1 if self._running() else 0)

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            self._expire()
            return self.jobs.get(job_id)

    # --- worker ----------------------------------------------------------------------------------

    def _running(self) -> Job | None:
        return next((j for j in self.jobs.values() if j.state == "running"), None)

    def _take(self) -> Job:
        """The next job by `fair_order`, marked running (caller holds the lock)."""
        job = fair_order(self._pending, self._served)[0]
        self._pending.remove(job)
        self._turn += 1
        waiting = {j.owner for j in self._pending}
        self._served = {o: t for o, t in self._served.items() if o in waiting} | {job.owner: self._turn}
        job.state = "running"
        return job

    # --- live frames (caller holds the lock) -----------------------------------------------------

    def _supersede_for(self, job: Job) -> None:
        """`job` is its client's newest live frame: the pending one goes, the running one learns of it."""
        for old in [j for j in self._pending if j.live and j.owner == job.owner]:
            self._pending.remove(old)
            old.cancel.set()
            self._finish(old, {"type": "superseded", "id": old.id, "by": job.id})
        running = self._running()
        if running is not None and running.live and running.owner == job.owner:
            running.newer = job.id

    def _outdated(self, job: Job) -> bool:
        """A running live frame to stop at this step: a newer frame waits and this one is too old."""
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
            self._live_results[job.owner] = (job.live_key, event)
            self._live_results.move_to_end(job.owner)
            while len(self._live_results) > LIVE_RESULTS:
                self._live_results.popitem(last=False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._take()
                if job.live and self._reuse(job):  # the same inputs finished while it waited
                    continue
            self._announce_positions()
            self.publish(job, {"type": "started", "id": job.id})
            self._execute(job)

    def _execute(self, job: Job) -> None:
        assert job.request is not None
        fmt = job.request.result_format
        ctx = JobContext(
            models=self.models,
            limits=self.limits,
            progress=lambda step, total, preview: self._progress(job, step, total, preview),
            cancelled=lambda: job.cancel.is_set() or self._outdated(job),
            partial=lambda img: self.publish(job, {"type": "partial", "id": job.id, "image": self._rect(img, fmt)}),
            plan=lambda plan: self.publish(job, {"type": "plan", "id": job.id, **plan}),
        )
        try:
            if job.cancel.is_set():
                raise Cancelled
            result = KINDS[job.kind].run(job.request, ctx)
            event = self._result_event(job, result, fmt)
        except Cancelled:
            stale = job.newer is not None and not job.cancel.is_set()
            event = (
                {"type": "superseded", "id": job.id, "by": job.newer} if stale else {"type": "cancelled", "id": job.id}
            )
        except (ProtocolError, JobError) as exc:
            event = error_event(exc.code, exc.message, job.id)
        except Exception as exc:  # a job failure must never take the worker down
            event = _failure_event(job.id, exc)
        finally:
            self.models.end_job()  # LoRA patches / VAE overrides never leak into the next job
        with self._cond:
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

    def _rect(self, img: ResultImage, fmt: ResultFormat) -> Event:
        px = img.pixels
        h, w = px.shape[:2]
        rect: Event = {"x": img.x, "y": img.y, "w": w, "h": h}
        if fmt == "rgba8":
            rect |= {"format": "rgba8", "data": images.rgba8_bytes(px)}
        elif fmt == "webp":
            rect |= {"format": "webp", "data": images.encode_webp(px)}
        else:
            rect |= {"format": "png", "data": images.encode_png(px)}
        if img.seed is not None:
            rect["seed"] = img.seed
        if img.name is not None:
            rect["name"] = img.name
        return rect

    def _result_event(self, job: Job, result: JobResult, fmt: ResultFormat) -> Event:
        ev: Event = {
            "type": "result",
            "id": job.id,
            "images": [self._rect(img, fmt) for img in result.images],
            "params": result.params | {"result_format": fmt},  # every kind reports the encoding it used
        }
        if result.canvas is not None:
            ev["canvas"] = {"w": result.canvas[0], "h": result.canvas[1]}
        return ev

    def _finish(self, job: Job, event: Event) -> None:
        """Record the terminal event (caller holds the lock) and publish it."""
        job.state = "done"
        job.terminal = event
        job.finished_at = time.monotonic()
        job.size = sum(len(img.get("data", b"")) for img in event.get("images", []))
        job.request = None  # free the inputs; only the terminal event is retained
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


def _failure_event(job_id: str, exc: Exception) -> Event:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        with contextlib.suppress(Exception):  # best effort on a device that may be gone
            torch.cuda.empty_cache()
        return error_event("out_of_memory", f"the GPU ran out of memory: {exc}. Try a smaller size or batch.", job_id)
    log.exception("job %s failed", job_id)
    return error_event("job_failed", f"{type(exc).__name__}: {exc}", job_id)
