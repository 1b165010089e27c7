"""Which queued job a free worker takes next: the one place the queue's selection policy lives.

Today's policy, in order: jobs run in submission order (FIFO), except that a free worker first takes
the oldest job whose model it already has loaded, and leaves a job whose model another *idle* worker
has loaded to that worker. So with several workers (GPUs, cluster hosts) each keeps serving the models
it holds and nobody reloads a checkpoint that is already on another free device; a job whose model is
loaded only on a busy worker goes to the free one (the least loaded) rather than wait. A job re-run
after its worker was lost avoids that worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from .jobs.base import Request
from .jobs.common import GenParams
from .workers.base import Worker


class Queued(Protocol):
    """What the policy reads of a queued job (`queue.Job`)."""

    model: str | None
    lost_on: list[Worker]


J = TypeVar("J", bound=Queued)


def job_model(request: Request | None) -> str | None:
    """The checkpoint a job runs on (None: it needs none, e.g. a plain upscale or echo)."""
    gen = getattr(request, "gen", None)
    return gen.model if isinstance(gen, GenParams) else None


def pick(pending: Sequence[J], worker: Worker, idle: Iterable[Worker]) -> J | None:
    """The job `worker` (free now) should run next, or None: it waits. `idle`: the other free workers."""
    mine = [job for job in pending if worker not in job.lost_on]
    for job in mine:
        if job.model is not None and worker.is_resident(job.model):
            return job
    others = [w for w in idle if w is not worker]
    for job in mine:
        model = job.model
        if model is None or not any(w.is_resident(model) and w not in job.lost_on for w in others):
            return job
    return None
