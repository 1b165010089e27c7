"""A job as the queue holds it, and the stop flag its worker polls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import images
from .jobs.base import Request
from .scheduling import job_model
from .workers.base import Worker

Event = dict[str, Any]


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
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # the submitting client's choice
    live: bool = False  # a live frame: latest frame wins
    live_key: str | None = None  # content hash of its inputs (None: never reused)
    submitted: float = field(default_factory=time.monotonic)
    newer: str | None = None  # while running: the id of its client's newest live frame since
    worker: Worker | None = None  # the one running it
    lost_on: list[Worker] = field(default_factory=list)  # workers that died running it
    model: str | None = None  # the checkpoint it needs (for affinity); from the request

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = job_model(self.request)


class LiveStop(threading.Event):
    """The flag a worker polls at each step: the job's own cancel, or, for a live frame, a newer frame
    that has waited long enough (`queue.JobQueue._outdated`). A remote worker is stopped through
    `Worker.cancel` instead, so live frames on a cluster are superseded only while they wait."""

    def __init__(self, job: Job, outdated: Callable[[Job], bool]) -> None:
        super().__init__()
        self._job, self._outdated = job, outdated

    def is_set(self) -> bool:
        return self._job.cancel.is_set() or self._outdated(self._job)
