"""Which queued job runs next: round-robin between clients, preferring the resident model, never starving.

Each client (its token-scoped client id, not its connection) has its own FIFO of jobs, and the
clients take turns in the order they queued. The client whose turn it is runs its oldest job, except
when that job needs a model other than the resident one while another client's next job fits the
resident model: that one goes first, so two users on different checkpoints don't reload a model per
job. Every client passed over that way counts a skip; once any client has been skipped
`skip_limit` times, turns are taken strictly until it has run. Hence the bound (docs/protocol.md):
a job at the head of its client's queue starts after at most (n − 1) + skip_limit other jobs, n
being the number of clients with queued jobs when it got there.

The policy is one class so that later work (several workers, live painting) extends it in one place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

SKIP_LIMIT = 3


class Schedulable(Protocol):
    @property
    def owner(self) -> str: ...

    @property
    def model(self) -> str | None: ...  # the checkpoint it loads; None = uses none (no reload either way)


J = TypeVar("J", bound=Schedulable)


@dataclass
class FairScheduler(Generic[J]):
    skip_limit: int = SKIP_LIMIT
    _queues: dict[str, deque[J]] = field(default_factory=dict)
    _turns: deque[str] = field(default_factory=deque)  # owners with queued jobs; the first has the turn
    _skips: dict[str, int] = field(default_factory=dict)

    def add(self, job: J) -> None:
        if job.owner not in self._queues:
            self._queues[job.owner] = deque()
            self._turns.append(job.owner)
            self._skips[job.owner] = 0
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

    def pick(self, resident: Callable[[str], bool]) -> J | None:
        """Take the next job to run; `resident(model)` says whether that model is loaded now."""
        if not self._turns:
            return None
        chosen = self._turns[0]
        strict = any(self._skips[o] >= self.skip_limit for o in self._turns)
        if not strict and not _fits(self._queues[chosen][0], resident):
            chosen = next((o for o in self._turns if _fits(self._queues[o][0], resident)), chosen)
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

        Simulated on a copy: after each job the model it loads is the resident one."""
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
