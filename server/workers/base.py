"""What the queue hands a worker, what a worker reports about itself, and the one failure that is not the job's.

A worker runs one job at a time on one device: in this process (`local.LocalWorker`) or in a Ray actor
on some GPU host (`remote.RemoteWorker`). Both take a `JobSpec`, send the job's events through `emit`
as it runs and return its terminal event (`result`, `error` or `cancelled`). A worker whose process or
host goes away mid-job raises `WorkerLost` instead: the queue then runs the job again elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..jobs.base import Request

Event = dict[str, Any]
Emit = Callable[[Event], None]
TERMINAL = ("result", "error", "cancelled")


@dataclass(frozen=True)
class JobSpec:
    """A parsed job as a worker needs it. It travels to Ray workers pickled: its images are numpy
    arrays, which Ray's object store carries as raw buffers (no copy into the pickle, no base64)."""

    id: str
    kind: str
    request: Request
    preview_formats: tuple[str, ...]


@dataclass
class WorkerInfo:
    """One line of `welcome.workers` / `status.workers`."""

    id: str
    host: str
    device: str
    state: str = "idle"  # starting | idle | busy | drained | lost
    resident: list[str] = field(default_factory=list)
    job: str | None = None
    pid: int | None = None
    failures: int = 0  # consecutive lost jobs; at DRAIN_AFTER the worker gets no more jobs

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "device": self.device,
            "state": self.state,
            "resident": list(self.resident),
            "job": self.job,
            "pid": self.pid,
        }


class WorkerLost(Exception):
    """The worker's process or host went away (or stopped answering) while it held a job."""


class Worker(Protocol):
    info: WorkerInfo

    def execute(self, spec: JobSpec, emit: Emit, cancel: threading.Event) -> Event:
        """Run `spec` to its end; → the terminal event. Raises `WorkerLost` only."""
        ...

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop `job_id` at its next step (the queue has set the job's flag already)."""
        ...

    def is_resident(self, model: str) -> bool: ...

    def close(self) -> None: ...
