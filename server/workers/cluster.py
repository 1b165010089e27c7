"""Workers on a Ray cluster: connect to it, and keep one worker actor per GPU of every node that is alive,
including nodes that join later (`ray start --address …` on a GPU host). A GPU slot whose workers keep
dying is drained: it gets no new worker."""

from __future__ import annotations

import logging
from typing import Any

from ..limits import Limits
from .actor import WorkerActor
from .config import WorkerConfig
from .remote import RemoteWorker

log = logging.getLogger(__name__)
INSTALL_HINT = "--ray needs Ray, an optional extra: pip install 'sdbridge[cluster]'"
NAMESPACE = "sdbridge"
ACTOR_THREADS = 4  # the job's stream, cancel and info calls beside it


class RayUnavailable(RuntimeError):
    pass


def connect(address: str) -> None:
    """Join the cluster at `address` (`auto`: the one this host belongs to) as its driver."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(INSTALL_HINT) from exc
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: {exc}") from exc


def disconnect() -> None:
    import ray

    ray.shutdown()


def gpu_slots() -> list[tuple[str, int]]:
    """(node id, n) for every GPU of every alive node (the head usually has none)."""
    import ray

    slots = []
    for node in ray.nodes():
        if node.get("Alive"):
            slots += [(node["NodeID"], i) for i in range(int(node["Resources"].get("GPU", 0)))]
    return slots


class RayWorkers:
    """Creates the worker actors; `spawn` is called at start and then periodically by the pool."""

    def __init__(self, config: WorkerConfig, limits: Limits, drain_after: int) -> None:
        self.config = config
        self.limits = limits
        self.drain_after = drain_after
        self.live: dict[tuple[str, int], RemoteWorker] = {}
        self.failures: dict[tuple[str, int], int] = {}
        self._actor_class: Any = None

    def drained(self, slot: tuple[str, int]) -> bool:
        return self.failures.get(slot, 0) >= self.drain_after

    def spawn(self) -> list[RemoteWorker]:
        """A new worker for every GPU slot that has none (and is not drained). → the new ones."""
        new = []
        for slot in gpu_slots():
            if slot not in self.live and not self.drained(slot):
                self.live[slot] = worker = RemoteWorker(self._create(slot[0]), slot)
                worker.info.failures = self.failures.get(slot, 0)
                new.append(worker)
        return new

    def lost(self, worker: RemoteWorker, during_job: bool) -> None:
        """`worker` died (or would not start): free its slot for a replacement unless it keeps failing."""
        if self.live.get(worker.slot) is worker:
            del self.live[worker.slot]
        if during_job or worker.info.state == "starting":
            self.failures[worker.slot] = self.failures.get(worker.slot, 0) + 1
        worker.info.failures = self.failures.get(worker.slot, 0)
        worker.info.state = "drained" if self.drained(worker.slot) else "lost"
        worker.close()

    def succeeded(self, worker: RemoteWorker) -> None:
        self.failures.pop(worker.slot, None)  # only consecutive losses drain a slot
        worker.info.failures = 0

    def _create(self, node_id: str) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._actor_class is None:
            self._actor_class = ray.remote(WorkerActor)
        return self._actor_class.options(
            num_gpus=1,
            num_cpus=1,
            max_concurrency=ACTOR_THREADS,
            max_restarts=0,  # the gateway re-runs the job and starts a replacement itself
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self.config, self.limits)
