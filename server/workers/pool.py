"""The set of workers jobs run on and their health: the fixed local ones, or the Ray cluster's, which
grow as GPU hosts join and shrink as workers die. A worker that loses `drain_after` jobs in a row is
drained (it gets no more jobs, and on Ray its GPU slot gets no replacement); it stays listed as such.

The queue owns the dispatching: it gets each new worker through `add` (and runs a thread for it), and
tells the pool how each job on it ended (`succeeded` / `lost`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .base import Worker, WorkerInfo
from .cluster import RayWorkers
from .remote import RemoteWorker

log = logging.getLogger(__name__)
DRAIN_AFTER = 2  # consecutive lost jobs
WATCH_S = 5.0  # how often the cluster is checked for new GPU hosts and dead idle workers


class WorkerPool:
    def __init__(self, workers: list[Worker], ray: RayWorkers | None = None) -> None:
        self.workers: list[Worker] = list(workers)
        self.ray = ray
        self.retired: list[WorkerInfo] = []  # drained (or lost for good) workers, still reported
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._add: Callable[[Worker], None] = lambda _w: None
        self._changed: Callable[[], None] = lambda: None

    @property
    def remote(self) -> bool:
        return self.ray is not None

    def start(self, add: Callable[[Worker], None], changed: Callable[[], None]) -> None:
        """`add(worker)` for every worker now and later; `changed()` when one is lost while idle."""
        self._add, self._changed = add, changed
        for worker in list(self.workers):
            add(worker)
        if self.ray is not None:
            self._spawn()
            self._watch = threading.Thread(target=self._watch_cluster, name="sdbridge-cluster", daemon=True)
            self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=WATCH_S + 15)
        for worker in list(self.workers):
            worker.close()

    def single_local(self, models: object) -> bool:
        """Whether the jobs run on one local worker using `models` itself (the one-device server)."""
        return self.ray is None and len(self.workers) == 1 and getattr(self.workers[0], "models", None) is models

    def usable(self, worker: Worker) -> bool:
        return worker.info.state not in ("drained", "lost")

    def succeeded(self, worker: Worker) -> None:
        with self._lock:
            self._failures.pop(worker.info.id, None)
            worker.info.failures = 0
            if self.ray is not None and isinstance(worker, RemoteWorker):
                self.ray.succeeded(worker)

    def lost(self, worker: Worker, during_job: bool) -> None:
        """`worker` failed to run a job or to start: drain it, or (Ray) replace it with a fresh one."""
        with self._lock:
            if worker not in self.workers:
                return
            if self.ray is not None and isinstance(worker, RemoteWorker):
                self.ray.lost(worker, during_job)  # counts per GPU slot, kills the actor
                self.workers.remove(worker)
                if worker.info.state == "drained":
                    self.retired.append(worker.info)
                log.warning("worker %s on %s lost (%s)", worker.info.id, worker.info.host, worker.info.state)
                return
            count = self._failures[worker.info.id] = self._failures.get(worker.info.id, 0) + int(during_job)
            worker.info.failures = count
            if count >= DRAIN_AFTER:
                worker.info.state = "drained"
                log.warning("worker %s drained after %d failed jobs in a row", worker.info.id, count)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            for worker in self.workers:
                refresh = getattr(worker, "refresh", None)  # a local worker reads its cache directly
                if refresh is not None:
                    refresh()
            return [w.info.describe() for w in self.workers] + [i.describe() for i in self.retired]

    # --- Ray: new GPU hosts, dead idle workers ------------------------------------------------------

    def _spawn(self) -> None:
        assert self.ray is not None
        with self._lock:
            new = self.ray.spawn()
            self.workers += new
        for worker in new:
            log.info("new worker %s (GPU slot %d of node %s)", worker.info.id, worker.slot[1], worker.slot[0][:8])
            self._add(worker)

    def _watch_cluster(self) -> None:
        while not self._stop.wait(WATCH_S):
            try:
                for worker in list(self.workers):
                    if isinstance(worker, RemoteWorker) and worker.info.state == "idle" and not worker.alive():
                        self.lost(worker, during_job=False)
                        self._changed()
                self._spawn()
            except Exception:  # the head may be briefly unreachable: try again next round
                log.exception("checking the cluster failed")


def resident_across(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`welcome.resident` across workers: each model once (the workers' lists say where exactly)."""
    where: dict[str, str] = {}
    for w in workers:
        for name in w["resident"]:
            if w["device"].startswith("cuda") or name not in where:
                where[name] = "vram" if w["device"].startswith("cuda") else "ram"
    return [{"name": name, "where": place} for name, place in where.items()]


def first_resident(workers: list[dict[str, Any]]) -> str | None:
    return next((w["resident"][0] for w in workers if w["resident"]), None)
