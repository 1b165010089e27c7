"""Which queued job a free worker runs next: round-robin between clients, preferring resident models,
never starving. The one place the queue's selection policy lives.

Each client (its token-scoped client id, not its connection) has its own FIFO of jobs, and the
clients take turns in the order they queued. The client whose turn it is runs its oldest job, except
when that job needs a model the free worker has not loaded while another client's next job fits it:
that one goes first, so two users on different checkpoints don't reload a model per job. Every client
passed over that way counts a skip; once any client has been skipped `skip_limit` times, turns are
taken strictly until it has run. Hence the bound (docs/protocol.md): a job at the head of its client's
queue starts after at most (n − 1) + skip_limit other jobs, n being the number of clients with queued
jobs when it got there.

With several workers (GPUs, cluster hosts) a free worker also leaves a job whose model another *idle*
worker has loaded to that worker (it takes it at once), so nobody reloads a checkpoint that is already
on a free device; a job whose model is loaded only on a busy worker goes to the free one rather than
wait. A job re-run after its worker was lost is not offered to that worker again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .jobs.base import Request
from .jobs.common import GenParams

SKIP_LIMIT = 3


class Schedulable(Protocol):
    @property
    def owner(self) -> str: ...

    @property
    def model(self) -> str | None: ...  # the checkpoint it loads; None = uses none (no reload either way)


J = TypeVar("J", bound=Schedulable)
Check = Callable[[J], bool]


def job_model(request: Request | None) -> str | None:
    """The checkpoint a job runs on (None: it needs none, e.g. a plain upscale or echo)."""
    gen = getattr(request, "gen", None)
    return gen.model if isinstance(gen, GenParams) else None


@dataclass
class FairScheduler(Generic[J]):
    skip_limit: int = SKIP_LIMIT
    _queues: dict[str, deque[J]] = field(default_factory=dict)
    _turns: deque[str] = field(default_factory=deque)  # owners with queued jobs; the first has the turn
    _skips: dict[str, int] = field(default_factory=dict)

    def add(self, job: J, first: bool = False) -> None:
        """Queue `job` last in its client's queue (`first`: at its head, e.g. a job re-run after a lost worker)."""
        if job.owner not in self._queues:
            self._queues[job.owner] = deque()
            self._skips[job.owner] = 0
            if first:
                self._turns.appendleft(job.owner)
            else:
                self._turns.append(job.owner)
        if first:
            self._queues[job.owner].appendleft(job)
        else:
            self._queues[job.owner].append(job)

    def remove(self, job: J) -> bool:
        queue = self._queues.get(job.owner)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            self._drop(job.owner)
        return True

    def replace(self, old: J, new: J) -> bool:
        """Put `new` in `old`'s place (same client): a live frame superseding the pending one keeps its turn."""
        queue = self._queues.get(old.owner)
        if queue is None or old not in queue or new.owner != old.owner:
            return False
        queue[queue.index(old)] = new
        return True

    def count(self, owner: str) -> int:
        return len(self._queues.get(owner, ()))

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __iter__(self) -> Iterator[J]:
        for queue in self._queues.values():
            yield from queue

    def pick(
        self,
        resident: Callable[[str], bool],
        usable: Check[J] | None = None,
        elsewhere: Check[J] | None = None,
    ) -> J | None:
        """Take the next job for a free worker, or None (it waits). `resident(model)`: whether that worker
        has the model loaded; `usable(job)`: whether it may run the job at all (not one it lost);
        `elsewhere(job)`: whether another idle worker has the job's model loaded (and will take it)."""
        heads = [o for o in self._turns if usable is None or usable(self._queues[o][0])]
        fit = [o for o in heads if _fits(self._queues[o][0], resident)]
        # A job this worker has loaded is its own; one that another idle worker has loaded is left to it.
        mine = [o for o in heads if o in fit or elsewhere is None or not elsewhere(self._queues[o][0])]
        if not mine:
            return None
        chosen = mine[0]
        strict = any(self._skips[o] >= self.skip_limit for o in self._turns)
        if not strict and chosen not in fit and fit:
            chosen = fit[0]
        for owner in self._turns:
            if owner == chosen:
                break
            self._skips[owner] += 1  # passed over: counts towards the bound
        job = self._queues[chosen].popleft()
        self._turns.remove(chosen)
        if self._queues[chosen]:
            self._turns.append(chosen)  # its next job waits for everyone else's turn
            self._skips[chosen] = 0
        else:
            del self._queues[chosen], self._skips[chosen]
        return job

    def order(self, resident: Callable[[str], bool]) -> list[J]:
        """The order the queued jobs will start in if nothing else arrives (what positions report).

        Simulated on a copy, as one worker: after each job the model it loads is the resident one."""
        queues = {o: deque(q) for o, q in self._queues.items()}
        sim = FairScheduler(self.skip_limit, queues, deque(self._turns), dict(self._skips))
        out: list[J] = []
        loaded: str | None = None
        while (job := sim.pick(resident if loaded is None else _same_as(loaded))) is not None:
            out.append(job)
            loaded = job.model or loaded
        return out

    def _drop(self, owner: str) -> None:
        del self._queues[owner]
        del self._skips[owner]
        self._turns.remove(owner)


def _fits(job: Schedulable, resident: Callable[[str], bool]) -> bool:
    return job.model is None or resident(job.model)


def _same_as(model: str) -> Callable[[str], bool]:
    return lambda name: name == model
